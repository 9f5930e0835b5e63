//! A real S3-compatible server for bench/storage.py: s3s-fs (SigV4 checked)
//! serving `<root>` on `127.0.0.1:<port>`, one bucket per directory. The
//! script starts and kills it to simulate an outage.
//!
//! `s3_server <port> <root> <access key> <secret key>`

use std::net::SocketAddr;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [port, root, access, secret] = args.as_slice() else {
        eprintln!("usage: s3_server <port> <root> <access key> <secret key>");
        std::process::exit(2);
    };
    let Ok(port) = port.parse::<u16>() else {
        eprintln!("port {port:?} is not a number");
        std::process::exit(2);
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tokio: {e}");
            std::process::exit(1);
        }
    };
    let result: Result<(), String> = runtime.block_on(async {
        let fs = s3s_fs::FileSystem::new(root).map_err(|e| format!("s3s-fs on {root}: {e:?}"))?;
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(access.as_str(), secret.as_str()));
        let service = builder.build();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("bind {addr}: {e}"))?;
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let service = service.clone();
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    if let Err(message) = result {
        eprintln!("{message}");
        std::process::exit(1);
    }
}
