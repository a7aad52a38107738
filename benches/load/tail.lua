-- wrk script (benches/load.sh): after a run, one line with the latency tail in microseconds,
-- beyond the 50/75/90/99 of --latency, to tell a tail that is shifted (p95 and p98 high too)
-- from rare stalls (only p99.9 and max high).
done = function(summary, latency, requests)
  local parts = {}
  for _, p in ipairs({ 90, 95, 98, 99, 99.5, 99.9, 99.99 }) do
    parts[#parts + 1] = string.format("p%g=%d", p, latency:percentile(p))
  end
  parts[#parts + 1] = string.format("max=%d", latency.max)
  io.write("tail_us " .. table.concat(parts, " ") .. "\n")
end
