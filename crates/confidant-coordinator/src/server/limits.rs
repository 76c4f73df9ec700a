//! What one client may cost the coordinator: how many connections it may hold, how long each
//! step of a request may take, and how a stalled reader is let go.
//!
//! The coordinator's port faces the network and needs no credentials for most of its API, so
//! everything a stranger can make it hold is bounded here (the body budget is enforced per
//! request in [`crate::api`]). `docs/formats/coordinator-api.md` ("Limits and timeouts") states
//! the resulting memory bound.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// The limits of the coordinator's listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; a connection beyond is closed as soon as it is accepted.
    pub max_connections: usize,
    /// Connections from one IP address at once; one beyond is closed as soon as it is accepted.
    pub max_connections_per_client: usize,
    /// How long a TLS handshake may take.
    pub handshake_timeout: Duration,
    /// How long a client may take to send a request's headers, counted from when the
    /// connection is ready for them: a new connection, or a kept-alive one after its last
    /// answer (this is also the idle timeout of kept-alive connections).
    pub header_timeout: Duration,
    /// How long a client may take to send a whole request body.
    pub body_timeout: Duration,
    /// How long a write may stay blocked on a client that does not read its answer.
    pub write_timeout: Duration,
    /// Request body bytes held at once over all connections (each request reserves its
    /// `Content-Length`, or [`crate::api::MAX_BODY`] without one, before reading its body).
    pub body_budget: usize,
}

/// The largest HTTP/1 read (and write) buffer per connection.
pub const READ_BUFFER: usize = 64 * 1024;
/// The largest request line and headers, in bytes.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// The most headers a request may have.
pub const MAX_HEADERS: usize = 64;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_connections_per_client: 64,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            body_budget: 64 << 20,
        }
    }
}

/// Counts the open connections, in all and per client address, and admits a new one only
/// under both caps.
#[derive(Debug)]
pub struct ConnectionGate {
    max: usize,
    max_per_client: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `max_connections` are open.
    Full,
    /// `max_connections_per_client` are open from this address.
    ClientFull,
}

impl ConnectionGate {
    /// A gate for `limits`' connection caps.
    pub fn new(limits: &Limits) -> Arc<ConnectionGate> {
        Arc::new(ConnectionGate {
            max: limits.max_connections,
            max_per_client: limits.max_connections_per_client,
            open: Mutex::new(Open::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        // Updates are single increments and decrements: a poisoned lock is still consistent.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a connection from `client`; it counts until the returned ticket is dropped.
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Result<Ticket, Refused> {
        let mut open = self.lock();
        if open.total >= self.max {
            return Err(Refused::Full);
        }
        let n = open.by_client.entry(client).or_insert(0);
        if *n >= self.max_per_client {
            return Err(Refused::ClientFull);
        }
        *n += 1;
        open.total += 1;
        Ok(Ticket {
            gate: self.clone(),
            client,
        })
    }

    /// The connections open now.
    pub fn open(&self) -> usize {
        self.lock().total
    }
}

/// An admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct Ticket {
    gate: Arc<ConnectionGate>,
    client: IpAddr,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut open = self.gate.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                open.by_client.remove(&self.client);
            }
        }
    }
}

/// A stream whose writes fail with `TimedOut` once one has been blocked for longer than the
/// write timeout: a client that stops reading its answers cannot hold the connection (and the
/// answer buffered for it) forever.
#[derive(Debug)]
pub struct WriteDeadline<T> {
    inner: T,
    timeout: Duration,
    blocked: Option<Pin<Box<Sleep>>>,
}

impl<T> WriteDeadline<T> {
    /// Wraps `inner`.
    pub fn new(inner: T, timeout: Duration) -> Self {
        WriteDeadline {
            inner,
            timeout,
            blocked: None,
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// Called when a write operation returned `poll`: starts the timer on the first `Pending`,
    /// stops it on progress, and turns a `Pending` past the deadline into an error.
    fn watch<R>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        match poll {
            Poll::Pending => {
                let timeout = self.timeout;
                let timer = self
                    .blocked
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the client did not read its answer for {timeout:?}"),
                    )));
                }
                Poll::Pending
            }
            ready => {
                self.blocked = None;
                ready
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn gate(max: usize, per_client: usize) -> Arc<ConnectionGate> {
        ConnectionGate::new(&Limits {
            max_connections: max,
            max_connections_per_client: per_client,
            ..Limits::default()
        })
    }

    #[test]
    fn caps_per_client_and_in_all_and_frees_on_drop() {
        let g = gate(3, 2);
        let a = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let b = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
        let a1 = g.admit(a).unwrap();
        let _a2 = g.admit(a).unwrap();
        assert_eq!(g.admit(a).unwrap_err(), Refused::ClientFull);
        let _b1 = g.admit(b).unwrap();
        assert_eq!(g.admit(b).unwrap_err(), Refused::Full);
        assert_eq!(g.open(), 3);
        drop(a1);
        assert_eq!(g.open(), 2);
        let _a3 = g.admit(a).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_blocked_past_the_deadline_fails() {
        // A duplex pipe with a 16-byte buffer nobody reads: the second write blocks.
        let (client, server) = tokio::io::duplex(16);
        let mut w = WriteDeadline::new(server, Duration::from_secs(5));
        use tokio::io::AsyncWriteExt as _;
        w.write_all(&[0; 16]).await.unwrap();
        let started = tokio::time::Instant::now();
        let e = w.write_all(&[0; 16]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(started.elapsed() >= Duration::from_secs(5));
        drop(client);
    }

    #[tokio::test(start_paused = true)]
    async fn progress_resets_the_deadline() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let (mut client, server) = tokio::io::duplex(16);
        let mut w = WriteDeadline::new(server, Duration::from_secs(5));
        // A reader that takes 3 s per 16 bytes: each blocked write waits 3 s < 5 s.
        let reader = tokio::spawn(async move {
            let mut buf = [0; 16];
            let mut total = 0;
            while total < 64 {
                tokio::time::sleep(Duration::from_secs(3)).await;
                total += client.read(&mut buf).await.unwrap();
            }
            total
        });
        w.write_all(&[1; 64]).await.unwrap();
        w.flush().await.unwrap();
        assert_eq!(reader.await.unwrap(), 64);
    }
}
