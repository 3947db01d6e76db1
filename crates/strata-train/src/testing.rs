//! Test support: a minimal HTTP/1.1 file server on 127.0.0.1, so download code runs for real
//! in tests without the internet (datasets here, model hubs in other crates).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// Serves `files` over HTTP/1.1 on an ephemeral loopback port; returns the base URL and the
/// list of paths requested. A file whose name starts with `short-` is announced with a longer
/// Content-Length than sent (a cut connection).
pub fn serve(files: HashMap<String, Vec<u8>>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let base = format!(
        "http://{}/data/",
        listener.local_addr().expect("loopback address")
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(64) {
            let Ok(mut stream) = stream else { continue };
            let Ok(clone) = stream.try_clone() else {
                continue;
            };
            let mut reader = BufReader::new(clone);
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let mut line = String::new();
            while matches!(reader.read_line(&mut line), Ok(n) if n > 2) {
                line.clear();
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            log.lock().expect("request log").push(path.clone());
            let name = path.trim_start_matches("/data/");
            match files.get(name) {
                Some(body) => {
                    let announced = if name.starts_with("short-") {
                        body.len() + 100
                    } else {
                        body.len()
                    };
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Length: {announced}\r\nConnection: close\r\n\r\n"
                    );
                    let _ = stream.write_all(body);
                }
                None => {
                    let _ = write!(
                        stream,
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                }
            }
        }
    });
    (base, seen)
}
