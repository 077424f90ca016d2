//! The accept loop of `pier serve`, over plain TCP or TLS: HTTP/1.1 and
//! HTTP/2 on every connection (chosen by ALPN over TLS, by the connection
//! preface otherwise), each request marked with what the connection knows
//! of its client (the peer address as axum's `ConnectInfo`; over TLS, that
//! the client addressed an `https` origin, so token realms say so, as
//! `pier_core::auth::RequestOrigin`; over mutual TLS, the verified
//! certificate's subject as `pier_core::auth::ClientCertificate`), and a
//! graceful shutdown that
//! stops accepting and lets open connections finish their requests.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use pier_core::auth::{ClientCertificate, RequestOrigin};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower_service::Service;

/// How long a client may take to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait before accepting again after the listener failed (out
/// of file descriptors, say), rather than spinning.
const ACCEPT_RETRY: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` (through `tls` when given) until `shutdown`
/// completes, then until every open connection has finished its requests
/// (the caller bounds that wait).
pub async fn serve(listener: TcpListener, tls: Option<TlsAcceptor>, app: Router, shutdown: impl Future<Output = ()>) {
    let connections = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let (app, watcher) = (app.clone(), connections.watcher());
        match &tls {
            None => {
                let client = Client {
                    peer,
                    over_tls: false,
                    certificate: None,
                };
                tokio::spawn(serve_connection(stream, client, app, watcher));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
                    };
                    let client = Client {
                        peer,
                        over_tls: true,
                        certificate: client_certificate(stream.get_ref().1, peer),
                    };
                    serve_connection(stream, client, app, watcher).await;
                });
            }
        }
    }
    drop(listener);
    connections.shutdown().await;
}

/// The subject of the certificate the client presented, which rustls has
/// verified against the client CA by now.
fn client_certificate(connection: &rustls::ServerConnection, peer: SocketAddr) -> Option<ClientCertificate> {
    let presented = connection.peer_certificates()?.first()?;
    match crate::tls::subject_of(presented) {
        Ok(subject) => Some(ClientCertificate { subject }),
        Err(e) => {
            tracing::warn!(%peer, error = %e, "a verified client certificate without a readable subject");
            None
        }
    }
}

/// What a connection knows of its client, given to each of its requests.
struct Client {
    peer: SocketAddr,
    over_tls: bool,
    certificate: Option<ClientCertificate>,
}

impl Client {
    fn mark<B>(&self, request: &mut http::Request<B>) {
        if self.over_tls {
            // The host the client asked for: HTTP/2's authority, HTTP/1.1's Host.
            let host = request
                .uri()
                .authority()
                .map(|authority| authority.to_string())
                .or_else(|| {
                    request
                        .headers()
                        .get(http::header::HOST)?
                        .to_str()
                        .ok()
                        .map(str::to_string)
                });
            if let Some(host) = host {
                request
                    .extensions_mut()
                    .insert(RequestOrigin(format!("https://{host}")));
            }
        }
        request.extensions_mut().insert(ConnectInfo(self.peer));
        if let Some(certificate) = &self.certificate {
            request.extensions_mut().insert(certificate.clone());
        }
    }
}

async fn serve_connection<I>(io: I, client: Client, app: Router, watcher: Watcher)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = client.peer;
    let service = hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
        client.mark(&mut request);
        app.clone().call(request)
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
