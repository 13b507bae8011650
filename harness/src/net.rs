//! The accept loop of the harness's local servers (the simulated API server and the git
//! server): bind, then hand each connection to its own task until told to stop.

use crate::error::{Error, ErrorKind, Result};
use std::future::Future;
use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpStream};

/// Binds `addr` (port 0: a free one); `what` names the server in the error.
pub async fn bind(addr: SocketAddr, what: &str) -> Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| Error::new(ErrorKind::Io, format!("{what} cannot listen on {addr}: {e}")))?;
    let local = listener.local_addr().map_err(|e| Error::new(ErrorKind::Io, format!("{what}: {e}")))?;
    Ok((listener, local))
}

/// Serves every connection with `conn` on its own task until `stop` fires (or its
/// sender is dropped).
pub fn accept_until<F, Fut>(listener: TcpListener, mut stop: tokio::sync::oneshot::Receiver<()>, conn: F)
where
    F: Fn(TcpStream, SocketAddr) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stop => break,
                c = listener.accept() => {
                    // A failed accept (peer gone, fd limit) affects that connection only.
                    let Ok((tcp, peer)) = c else { continue };
                    tokio::spawn(conn(tcp, peer));
                }
            }
        }
    });
}
