//! A `valori serve` started in-process on a fresh data directory and free
//! loopback ports, on a runtime with Tokio's default worker stacks (as
//! the binary's), stopped (in-flight requests finished, checkpoint
//! written) when dropped. Shared by the wire test binaries; each adds the
//! request helpers it needs in its own `impl Server`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use valori_engine::Engine;
use valori_wire::config::ServeArgs;

pub struct Server {
    pub rest: SocketAddr,
    pub pg: SocketAddr,
    pub flight: SocketAddr,
    pub engine: Arc<Engine>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// A server with `args`' settings; the data directory and addresses
    /// are the test's, and one index thread unless `args` says otherwise.
    pub fn start(args: ServeArgs) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let config = ServeArgs {
            data_dir: Some(dir.path().to_owned()),
            rest_addr: Some("127.0.0.1:0".parse().unwrap()),
            pg_addr: Some("127.0.0.1:0".parse().unwrap()),
            flight_addr: Some("127.0.0.1:0".parse().unwrap()),
            index_threads: args.index_threads.or(Some(1)),
            ..args
        }
        .resolve()
        .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, running) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(valori_wire::server::serve(
                config,
                async move {
                    let _ = stopped.await;
                },
                move |running| {
                    ready
                        .send((
                            running.rest_addr,
                            running.pg_addr,
                            running.flight_addr,
                            Arc::clone(&running.engine),
                        ))
                        .unwrap()
                },
            ))
            .unwrap();
        });
        let (rest, pg, flight, engine) = running.recv().unwrap();
        Server {
            rest,
            pg,
            flight,
            engine,
            stop: Some(stop),
            thread: Some(thread),
            _dir: dir,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
