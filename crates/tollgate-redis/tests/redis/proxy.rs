//! A TCP proxy in front of a test's redis-server that loses replies on demand: the request
//! reaches the server and is carried out, then the connection is closed instead of the reply
//! being passed back (a connection that drops at the worst moment).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The proxy; it stops accepting connections when dropped.
#[derive(Debug)]
pub(crate) struct Proxy {
    port: u16,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Shared {
    /// The requests whose replies are to be lost: those containing the bytes, this many more.
    armed: Mutex<Option<(Vec<u8>, usize)>>,
    lost: AtomicUsize,
}

impl Proxy {
    /// A proxy on a free port of 127.0.0.1 to the server on `upstream`.
    pub(crate) async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await {
                    tokio::spawn(pipe(client, server, s.clone()));
                }
            }
        });
        Proxy {
            port,
            shared,
            accept,
        }
    }

    /// `redis://127.0.0.1:<proxy port>`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Loses the replies to the next `n` requests that contain `pattern`.
    pub(crate) fn lose_replies(&self, pattern: &str, n: usize) {
        *self.shared.armed.lock().unwrap() = (n > 0).then(|| (pattern.as_bytes().to_vec(), n));
    }

    /// How many replies were lost so far.
    pub(crate) fn lost(&self) -> usize {
        self.shared.lost.load(Ordering::Acquire)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Copies both ways until either side closes; after a request that matched, closes both sides
/// as soon as the server answers.
async fn pipe(mut client: TcpStream, mut server: TcpStream, shared: Arc<Shared>) {
    let (mut up, mut down) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    let mut doomed = false;
    loop {
        tokio::select! {
            biased;
            n = client.read(&mut up) => {
                let Ok(n @ 1..) = n else { return };
                doomed |= matched(&shared, &up[..n]);
                if server.write_all(&up[..n]).await.is_err() {
                    return;
                }
            }
            n = server.read(&mut down) => {
                let Ok(n @ 1..) = n else { return };
                if doomed {
                    shared.lost.fetch_add(1, Ordering::AcqRel);
                    return;
                }
                if client.write_all(&down[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Whether `request` is one whose reply is to be lost (and counts it).
fn matched(shared: &Shared, request: &[u8]) -> bool {
    let mut armed = shared.armed.lock().unwrap();
    let Some((pattern, left)) = armed.as_mut() else {
        return false;
    };
    if !request.windows(pattern.len()).any(|w| w == &pattern[..]) {
        return false;
    }
    *left -= 1;
    if *left == 0 {
        *armed = None;
    }
    true
}
