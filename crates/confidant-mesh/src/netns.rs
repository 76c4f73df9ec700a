//! Sockets inside the app's network namespace.
//!
//! When the app runs in a network namespace of its own (only a loopback interface), the proxy
//! stays in the agent's namespace for its TLS side and opens its sockets towards the app there:
//! the ingress's connections to the app's plain port and the egress's local listeners. A socket
//! belongs to the namespace of the thread that created it, whatever thread uses it afterwards; so
//! one thread joins the app's namespace (`setns`) and only creates sockets, which the runtime's
//! workers then bind, connect and use as usual.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};
use tokio::net::TcpSocket;
use tokio::sync::oneshot;

use crate::MeshError;

/// Where a created socket goes back to.
enum Reply {
    Async(oneshot::Sender<io::Result<TcpSocket>>),
    Blocking(mpsc::Sender<io::Result<TcpSocket>>),
}

struct Request {
    v6: bool,
    reply: Reply,
}

/// A thread inside the app's network namespace that makes TCP sockets there.
pub(crate) struct AppNetwork {
    path: PathBuf,
    requests: mpsc::Sender<Request>,
}

impl AppNetwork {
    /// Starts the socket thread in the network namespace at `path` (`/proc/PID/ns/net` or a
    /// bind mount of it, such as `/run/netns/NAME`). The thread ends when this is dropped.
    pub(crate) fn enter(path: &Path) -> Result<AppNetwork, MeshError> {
        let err = |source: io::Error| MeshError::AppNetwork {
            path: path.to_path_buf(),
            source,
        };
        let ns = File::open(path).map_err(err)?;
        let (requests, incoming) = mpsc::channel::<Request>();
        let (entered, entered_rx) = mpsc::channel::<io::Result<()>>();
        std::thread::Builder::new()
            .name("confidant-netns".into())
            .spawn(move || {
                let joined =
                    move_into_link_name_space(ns.as_fd(), Some(LinkNameSpaceType::Network))
                        .map_err(io::Error::from);
                let ok = joined.is_ok();
                let _ = entered.send(joined);
                if !ok {
                    return;
                }
                for request in incoming {
                    let socket = if request.v6 {
                        TcpSocket::new_v6()
                    } else {
                        TcpSocket::new_v4()
                    };
                    match request.reply {
                        Reply::Async(tx) => {
                            let _ = tx.send(socket);
                        }
                        Reply::Blocking(tx) => {
                            let _ = tx.send(socket);
                        }
                    }
                }
            })
            .map_err(err)?;
        entered_rx
            .recv()
            .map_err(|_| {
                err(io::Error::other(
                    "the namespace thread ended before joining",
                ))
            })?
            .map_err(err)?;
        Ok(AppNetwork {
            path: path.to_path_buf(),
            requests,
        })
    }

    /// The namespace's path (for logs).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A new TCP socket in the app's namespace, from async code.
    pub(crate) async fn socket(&self, v6: bool) -> io::Result<TcpSocket> {
        let (tx, rx) = oneshot::channel();
        self.send(Request {
            v6,
            reply: Reply::Async(tx),
        })?;
        rx.await.map_err(|_| gone())?
    }

    /// A new TCP socket in the app's namespace, from synchronous code (also inside a runtime
    /// context, where async waiting is not possible).
    pub(crate) fn socket_blocking(&self, v6: bool) -> io::Result<TcpSocket> {
        let (tx, rx) = mpsc::channel();
        self.send(Request {
            v6,
            reply: Reply::Blocking(tx),
        })?;
        rx.recv().map_err(|_| gone())?
    }

    fn send(&self, request: Request) -> io::Result<()> {
        self.requests.send(request).map_err(|_| gone())
    }
}

fn gone() -> io::Error {
    io::Error::other("the thread in the app's network namespace has stopped")
}
