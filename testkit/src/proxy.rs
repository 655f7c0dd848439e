//! A TCP proxy on loopback that delays what the server answers: it makes a reply arrive
//! after the client's timeout for real (the server has acted; the client does not know),
//! without mocking the client or the server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Forwards every connection to `target`; replies wait [`DelayProxy::set_delay`] first.
/// [`DelayProxy::set_refusing`] plays a server that went away: open connections are
/// cut and new ones closed at once.
#[derive(Debug, Clone)]
pub struct DelayProxy {
    addr: SocketAddr,
    delay_ms: Arc<AtomicU64>,
    refusing: Arc<tokio::sync::watch::Sender<bool>>,
}

impl DelayProxy {
    /// Listens on an ephemeral loopback port and forwards to `target` (`host:port`).
    pub async fn start(target: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let delay_ms = Arc::new(AtomicU64::new(0));
        let target = target.to_owned();
        let delay = delay_ms.clone();
        let (refusing, watch) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *watch.borrow() {
                    drop(client);
                    continue;
                }
                let target = target.clone();
                let delay = delay.clone();
                let mut cut = watch.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&target).await {
                        tokio::select! {
                            () = relay(client, server, delay) => {}
                            _ = cut.wait_for(|refusing| *refusing) => {}
                        }
                    }
                });
            }
        });
        Ok(Self {
            addr,
            delay_ms,
            refusing: Arc::new(refusing),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `true`: cuts every open connection and closes new ones as they arrive (the
    /// server is gone); `false`: forwards again.
    pub fn set_refusing(&self, refusing: bool) {
        self.refusing.send_replace(refusing);
    }

    /// From now on, each reply chunk is forwarded `delay` after it arrived (in order).
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms.store(
            u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            Ordering::SeqCst,
        );
    }
}

async fn relay(client: TcpStream, server: TcpStream, delay: Arc<AtomicU64>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = AbortOnDrop(tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
    }));
    // Replies keep their order: each chunk waits until its own due time.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let reader = AbortOnDrop(tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let due = tokio::time::Instant::now()
                        + Duration::from_millis(delay.load(Ordering::SeqCst));
                    if tx.send((due, buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    }));
    while let Some((due, chunk)) = rx.recv().await {
        tokio::time::sleep_until(due).await;
        if client_write.write_all(&chunk).await.is_err() {
            break;
        }
    }
    drop(reader);
    drop(upstream);
}

/// Ends a relay's task when the relay ends, or is dropped because the proxy cut it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
