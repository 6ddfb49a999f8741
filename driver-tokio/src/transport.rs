//! The client's byte stream: plain TCP, or TLS kept behind a box so that a plain connection
//! does not carry the size of a TLS session inline (it is most of an idle client's memory).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;

/// A connected client socket, plain or TLS.
#[derive(Debug)]
pub enum Transport {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://`.
    Tls(Box<TlsStream<TcpStream>>),
}

/// A WebSocket over a [`Transport`].
pub type Ws = WebSocketStream<Transport>;

/// The TLS settings used when none are given: the webpki roots, built once per process.
fn default_tls() -> Arc<rustls::ClientConfig> {
    static TLS: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    TLS.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
        )
    })
    .clone()
}

/// Connects TCP (no Nagle: frames are small and latency matters), TLS for `wss://`, then the
/// WebSocket handshake.
pub async fn open(
    url: &str,
    config: WebSocketConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Ws, String> {
    let request = url.into_client_request().map_err(|e| e.to_string())?;
    let uri = request.uri();
    let host = uri.host().ok_or("the URL has no host")?.to_string();
    let secure = uri.scheme_str() == Some("wss");
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    // IPv6 literals come bracketed in the URI; the resolver wants them bare.
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let tcp = TcpStream::connect((bare.as_str(), port))
        .await
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let transport = if secure {
        let name = rustls::pki_types::ServerName::try_from(bare)
            .map_err(|e| format!("invalid TLS server name: {e}"))?;
        let connector = tokio_rustls::TlsConnector::from(tls.unwrap_or_else(default_tls));
        let stream = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        Transport::Tls(Box::new(stream))
    } else {
        Transport::Plain(tcp)
    };
    handshake(transport, request, config).await
}

/// Largest handshake response accepted.
const MAX_RESPONSE_BYTES: usize = 16 * 1024;

/// The client side of the opening handshake (RFC 6455 §4.1), with tungstenite's request and
/// accept-key helpers. Done here rather than by tungstenite's handshake machine because that one
/// hands its 4 KiB response buffer on as the connection's read buffer, whatever
/// `read_buffer_size` says: most of an idle client's memory.
async fn handshake(
    mut io: Transport,
    request: tokio_tungstenite::tungstenite::handshake::client::Request,
    config: WebSocketConfig,
) -> Result<Ws, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::handshake::client::generate_request;
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    use tokio_tungstenite::tungstenite::protocol::Role;

    let (bytes, key) = generate_request(request).map_err(|e| e.to_string())?;
    io.write_all(&bytes).await.map_err(|e| e.to_string())?;
    io.flush().await.map_err(|e| e.to_string())?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    loop {
        let n = io.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed during the WebSocket handshake".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        let len = match response.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() <= MAX_RESPONSE_BYTES => continue,
            Ok(httparse::Status::Partial) => return Err("handshake response too large".into()),
            Err(e) => return Err(format!("invalid handshake response: {e}")),
        };
        if response.code != Some(101) {
            return Err(format!(
                "handshake refused: HTTP {} {}",
                response.code.unwrap_or(0),
                response.reason.unwrap_or("")
            ));
        }
        let header = |name: &str| {
            response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
        };
        if !header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
            return Err("handshake response lacks `Upgrade: websocket`".into());
        }
        if !header("connection").is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        }) {
            return Err("handshake response lacks `Connection: upgrade`".into());
        }
        if header("sec-websocket-accept").as_deref() != Some(&derive_accept_key(key.as_bytes())) {
            return Err("handshake response has a wrong Sec-WebSocket-Accept".into());
        }
        // Frames the server sent right behind its response start the read buffer.
        let tail = buf[len..].to_vec();
        return Ok(
            WebSocketStream::from_partially_read(io, tail, Role::Client, Some(config)).await,
        );
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Plain(s) => s.is_write_vectored(),
            Transport::Tls(s) => s.is_write_vectored(),
        }
    }
}
