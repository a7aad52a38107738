//! Accepted connections spread evenly over the workers (`docs/performance.md#accept-balancing`).
//!
//! Each worker accepts on its own `SO_REUSEPORT` socket, and the kernel picks the socket by a
//! hash of the client's address and port. With few long-lived clients that hash often leaves a
//! worker idle: four connections from wrk all landed on one of two workers in 2 runs of 6. So
//! a worker that accepts a connection while it holds more open connections than the least
//! loaded worker hands the socket over to that worker, as HAProxy dispatches each accepted
//! connection to its least loaded thread. Only the accept pays for it (the socket moves between
//! the two workers' reactors once); a connection never moves after it is served.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio_rustls::TlsAcceptor;

use super::drain::{OpenConnection, OpenConnections};

/// A connection accepted by one worker and to be served by another.
pub(super) struct HandedOver {
    pub stream: std::net::TcpStream,
    pub peer: SocketAddr,
    pub acceptor: Option<TlsAcceptor>,
    /// The `max_connections` slot, held for the connection's life.
    pub permit: OwnedSemaphorePermit,
    /// Counted open on the receiving worker from the moment it was chosen.
    pub open: OpenConnection,
}

/// One worker as the others see it: how many connections it has open, and where to send it one.
struct WorkerLoad {
    connections: Arc<OpenConnections>,
    inbox: mpsc::UnboundedSender<HandedOver>,
}

/// Every worker's open connections and inbox, shared by all workers.
pub(super) struct Balancer {
    workers: Vec<WorkerLoad>,
}

/// What a worker receives from the others.
pub(super) type Inbox = mpsc::UnboundedReceiver<HandedOver>;

impl Balancer {
    /// A balancer over `workers` workers, with each worker's inbox in the same order.
    pub fn new(workers: usize) -> (Arc<Balancer>, Vec<(Arc<OpenConnections>, Inbox)>) {
        let mut loads = Vec::with_capacity(workers);
        let mut ends = Vec::with_capacity(workers);
        for _ in 0..workers {
            let connections = Arc::new(OpenConnections::default());
            let (inbox, receiver) = mpsc::unbounded_channel();
            loads.push(WorkerLoad {
                connections: connections.clone(),
                inbox,
            });
            ends.push((connections, receiver));
        }
        (Arc::new(Balancer { workers: loads }), ends)
    }

    /// Count a connection just accepted by worker `me` open on the worker that should serve
    /// it: `me` unless another worker has fewer open connections, then the least loaded one.
    pub fn place(&self, me: usize) -> (usize, OpenConnection) {
        let mine = self.workers[me].connections.count();
        let (least, fewest) = self
            .workers
            .iter()
            .enumerate()
            .map(|(i, w)| (i, w.connections.count()))
            .min_by_key(|&(_, count)| count)
            .unwrap_or((me, mine));
        let chosen = if fewest < mine { least } else { me };
        (chosen, self.workers[chosen].connections.opened())
    }

    /// Send a connection to worker `to`. An error means it was not sent (that worker has
    /// stopped, or the socket could not leave this worker's reactor) and is closed on return,
    /// like a connection still in the backlog at shutdown.
    pub fn hand_over(
        &self,
        to: usize,
        stream: TcpStream,
        peer: SocketAddr,
        acceptor: Option<TlsAcceptor>,
        permit: OwnedSemaphorePermit,
        open: OpenConnection,
    ) -> Result<(), std::io::Error> {
        // Leaves this worker's reactor; the receiver registers it with its own.
        let stream = stream.into_std()?;
        let handed = HandedOver {
            stream,
            peer,
            acceptor,
            permit,
            open,
        };
        self.workers[to]
            .inbox
            .send(handed)
            .map_err(|_| std::io::Error::other("the chosen worker has stopped"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_goes_to_the_least_loaded_worker_and_stays_home_on_a_tie() {
        let (balancer, ends) = Balancer::new(3);
        let _held: Vec<_> = (0..2).map(|_| ends[0].0.opened()).collect();
        let _one = ends[1].0.opened();
        // Worker 0 holds 2, worker 1 holds 1, worker 2 none: worker 2 gets it.
        let (to, open) = balancer.place(0);
        assert_eq!(to, 2);
        assert_eq!(ends[2].0.count(), 1, "counted on the receiver at once");
        drop(open);
        assert_eq!(ends[2].0.count(), 0);
        // Worker 2 accepting with the fewest keeps its own connection.
        let (to, _open) = balancer.place(2);
        assert_eq!(to, 2);
        // A tie keeps the connection where it was accepted.
        let (to, _open) = balancer.place(1);
        assert_eq!(to, 1);
    }
}
