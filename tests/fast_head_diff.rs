//! The fast path's head classifier against hyper's server, on the heads of the conformance and
//! hostile-input suites, RFC 9112's examples, pipelined sequences and every framing error class
//! (docs/security.md#the-fast-path-differential-suite): each head the classifier calls simple
//! must read the same through hyper (`canaryd::fuzzing::fast_head` asserts it), and each head
//! here has the verdict written beside it, so a classifier that grows or loses a rule shows.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use canaryd::fuzzing::{fast_head, fast_head_verdict};

/// (head, expected verdict).
const CORPUS: &[(&[u8], &str)] = &[
    // RFC 9112 §3.2 and §2.1 examples, with the Host that HTTP/1.1 needs.
    (
        b"GET /hello.txt HTTP/1.1\r\nUser-Agent: curl/7.64.1\r\nHost: www.example.com\r\n\
          Accept-Language: en, mi\r\n\r\n",
        "simple",
    ),
    (b"GET /pub/WWW/TheProject.html HTTP/1.1\r\nHost: www.w3.org\r\n\r\n", "simple"),
    (b"GET /where?q=now HTTP/1.1\r\nHost: www.example.org\r\n\r\n", "simple"),
    (b"GET http://www.example.org/pub/WWW/TheProject.html HTTP/1.1\r\nHost: www.example.org\r\n\r\n", "Target"),
    (b"CONNECT www.example.com:80 HTTP/1.1\r\nHost: www.example.com\r\n\r\n", "Method"),
    (b"OPTIONS * HTTP/1.1\r\nHost: www.example.org:8001\r\n\r\n", "Method"),
    // The conformance suite's heads.
    (b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n", "simple"),
    (b"GET /a HTTP/1.1\r\nHo", "Partial"),
    (b"GET /x HTTP/1.1\r\nHost: a\r\n", "Partial"),
    (b"GET /page HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", "simple"),
    (b"GET /page HTTP/1.0\r\nHost: a\r\n\r\n", "Version"),
    (b"GET /old HTTP/1.0\r\n\r\n", "Version"),
    (b"GET /known HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /after HTTP/1.0\r\n\r\n", "Version"),
    (b"GET /lf HTTP/1.1\r\nHost: a\r\nX-A: one\nX-B: two\r\nConnection: close\r\n\r\n", "simple"),
    (b"GET /x HTTP/1.1\r\nHost : a\r\n\r\n", "Malformed"),
    (b"GET /x HTTP/1.1\r\nHost: a\r\nX-A: one\n two three\r\n\r\n", "Malformed"),
    (b"GET /x HTTP/1.1\r\nHost: a\r\nX-A: one\rX-B: two\r\n\r\n", "Malformed"),
    (b"GET /x HTTP/1.1\r\nHost: a\r\nX-A: one\r\n two\r\n\r\n", "Malformed"),
    (b"GET /x HTTP/1.1\r\nHost: a\r\nX-A: one\r\n\ttwo\r\n\r\n", "Malformed"),
    (b"GET /x HTTP/1.2\r\nHost: a\r\n\r\n", "Malformed"),
    (b"GET http://b.test/p HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n", "Target"),
    (b"OPTIONS * HTTP/1.1\r\nHost: a\r\nMax-Forwards: 0\r\nConnection: close\r\n\r\n", "Method"),
    (b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", "Upgrade"),
    (b"POST /stall HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n012", "simple"),
    (b"POST /stall HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n", "Expect"),
    (
        b"POST /switch HTTP/1.1\r\nHost: a\r\nContent-Type: application/grpc\r\nTE: trailers\r\n\
          Content-Length: 0\r\nConnection: close\r\n\r\n",
        "Te",
    ),
    // Every framing error class of docs/security.md.
    (b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello!", "ContentLength"),
    (b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello", "ContentLength"),
    (b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", "ContentLength"),
    (b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", "ContentLength"),
    (b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", "ContentLength"),
    (b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", "ContentLength"),
    (b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length\t: 5\r\n\r\nhello", "Malformed"),
    (b"POST /x HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "Version"),
    (b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "TransferEncoding"),
    (b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "TransferEncoding"),
    (b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", "TransferEncoding"),
    (b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nhello", "TransferEncoding"),
    (b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "TransferEncoding"),
    (b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", "Malformed"),
    (b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", "TransferEncoding"),
    (b"GET /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", "TransferEncoding"),
    // Host rules.
    (b"GET / HTTP/1.1\r\n\r\n", "Host"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "Host"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", "Host"),
    (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", "Host"),
    (b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", "Host"),
    (b"GET / HTTP/1.1\r\nHost: a:65536\r\n\r\n", "Host"),
    (b"GET / HTTP/1.1\r\nHost:\r\n\r\n", "Host"),
    (b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", "simple"),
    // Hop-by-hop, forwarded and id fields: simple, read in the same pass.
    (
        b"GET /h HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\n\
          Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nClose: x\r\nTrailer: x-t\r\n\r\n",
        "simple",
    ),
    (
        b"GET /f HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\n\
          X-Forwarded-Proto: https\r\nX-Forwarded-Host: b\r\nX-Request-Id: r\r\n\r\n",
        "simple",
    ),
    (
        b"GET /c HTTP/1.1\r\nConnection: keep-alive, x-b\r\nHost: a\r\nX-A: 1\r\nX-B: 2\r\n\
          X-A: 3\r\nX-Forwarded-For: 1.1.1.1\r\nUser-Agent: u\r\n\r\n",
        "simple",
    ),
    (
        b"GET /k HTTP/1.1\r\nKeep-Alive: 5\r\nHost: a\r\nX-Forwarded-Proto: https\r\nConnection: host\r\n\
          X-Request-Id: r\r\nAccept: */*\r\n\r\n",
        "simple",
    ),
    (b"GET /f HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: caf\xc3\xa9\r\n\r\n", "NonAsciiField"),
    (b"GET /o HTTP/1.1\r\nHost: a\r\nX-Name: caf\xc3\xa9\r\n\r\n", "simple"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n", "Te"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\r\n", "Http2Settings"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n", "Http2Settings"),
    // Methods and targets.
    (b"HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n", "simple"),
    (b"PUT /p HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", "simple"),
    (b"DELETE /d HTTP/1.1\r\nHost: a\r\n\r\n", "simple"),
    (b"PATCH /p HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}", "simple"),
    (b"TRACE / HTTP/1.1\r\nHost: a\r\n\r\n", "Method"),
    (b"PURGE /p HTTP/1.1\r\nHost: a\r\n\r\n", "Method"),
    (b"get / HTTP/1.1\r\nHost: a\r\n\r\n", "Method"),
    (b"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", "Target"),
    (b"GET /a%20b?x=%22y%22&z=[1] HTTP/1.1\r\nHost: a\r\n\r\n", "simple"),
    (b"GET /a\"{b}|~?c`d HTTP/1.1\r\nHost: a\r\n\r\n", "simple"),
    (b"GET /a?b\"c HTTP/1.1\r\nHost: a\r\n\r\n", "Target"),
    (b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", "Target"),
    (b"GET //double HTTP/1.1\r\nHost: a\r\n\r\n", "simple"),
    (b"GET ?q HTTP/1.1\r\nHost: a\r\n\r\n", "Target"),
    // Pipelined: only the first head is read; the rest stays for the next round.
    (
        b"GET /one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        "simple",
    ),
    (
        b"GET /x HTTP/1.1\r\nHost : app.test\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n",
        "Malformed",
    ),
    (b"\r\nGET /after-blank-line HTTP/1.1\r\nHost: a\r\n\r\n", "simple"),
];

#[test]
fn every_simple_head_reads_the_same_through_hyper() {
    for (head, _) in CORPUS {
        let outcome = std::panic::catch_unwind(|| fast_head(head));
        assert!(outcome.is_ok(), "{:?}", String::from_utf8_lossy(head));
    }
}

#[test]
fn each_head_gets_its_written_verdict() {
    let mut wrong = Vec::new();
    for (head, want) in CORPUS {
        let got = fast_head_verdict(head);
        if got != *want {
            wrong.push(format!(
                "{:?}: {got}, expected {want}",
                String::from_utf8_lossy(head)
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A small deterministic mutation run over the corpus, so `cargo test` explores past the
/// written heads: bytes changed, dropped, doubled, and field lines spliced in.
#[test]
fn mutated_heads_read_the_same_through_hyper() {
    const SPLICES: &[&[u8]] = &[
        b"Content-Length: 3\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"Host: b\r\n",
        b"Connection: close, x-a\r\n",
        b"X-A: 1\r\n",
        b"TE: trailers\r\n",
        b"\n",
        b"\r",
        b" ",
        b":",
    ];
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        usize::try_from(state % (bound.max(1) as u64)).unwrap()
    };
    let mut simple = 0;
    for round in 0..1500 {
        let (base, _) = CORPUS[round % CORPUS.len()];
        let mut head = base.to_vec();
        for _ in 0..=next(3) {
            let at = next(head.len());
            match next(4) {
                0 => head[at] = u8::try_from(next(256)).unwrap(),
                1 => {
                    head.remove(at);
                }
                2 => head.insert(at, head[at.min(head.len() - 1)]),
                _ => {
                    let line = SPLICES[next(SPLICES.len())];
                    let at = head
                        .windows(2)
                        .position(|w| w == b"\r\n")
                        .map_or(at, |p| p + 2);
                    head.splice(at..at, line.iter().copied());
                }
            }
            if head.is_empty() {
                head.push(b'G');
            }
        }
        if fast_head_verdict(&head) == "simple" {
            simple += 1;
        }
        let outcome = std::panic::catch_unwind(|| fast_head(&head));
        assert!(outcome.is_ok(), "{:?}", String::from_utf8_lossy(&head));
    }
    // The run must reach the property, not only heads the classifier turns away.
    assert!(simple > 100, "only {simple} mutated heads were simple");
}
