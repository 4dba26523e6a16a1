//! Test guest for lepton: a WAGI (CGI over WASI) command built for `wasm32-wasip1`, a plain
//! `_start` core module that lepton turns into a component with the command adapter. It prints
//! CGI headers, a blank line, then its argv, selected environment variables and stdin. The last
//! path segment picks a behaviour (`location`, `status`, `noheaders`, `exit0`, `exit3`, `silent`,
//! and `loop`, which loops forever without calling the host, for the request-deadline tests).

use std::io::{Read, Write};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = std::env::var("PATH_INFO").unwrap_or_default();
    let last = path.rsplit('/').next().unwrap_or_default().to_owned();
    let mut out = std::io::stdout().lock();
    match last.as_str() {
        "location" => {
            let _ = write!(out, "Location: /elsewhere\n\n");
            return;
        }
        "status" => {
            let _ = write!(out, "Status: 418 I'm a teapot\r\nContent-Type: text/plain\r\nX-Wagi: yes\r\n\r\nteapot\n");
            return;
        }
        "noheaders" => {
            let _ = write!(out, "X-Only: header\n\nbody\n");
            return;
        }
        "silent" => return,
        "loop" => loop_forever(),
        "exit0" => {
            let _ = write!(out, "Content-Type: text/plain\n\nexiting 0\n");
            let _ = out.flush();
            std::process::exit(0);
        }
        "exit3" => {
            let _ = write!(out, "Content-Type: text/plain\n\nexiting 3\n");
            let _ = out.flush();
            std::process::exit(3);
        }
        _ => {}
    }
    let mut stdin = String::new();
    let _ = std::io::stdin().read_to_string(&mut stdin);
    let mut report = String::from("Content-Type: text/plain\n\n");
    report.push_str(&format!("argv: {args:?}\n"));
    let mut vars: Vec<(String, String)> = std::env::vars().collect();
    vars.sort();
    for (k, v) in vars {
        report.push_str(&format!("{k}={v}\n"));
    }
    report.push_str(&format!("stdin: {stdin}\n"));
    let _ = out.write_all(report.as_bytes());
}

/// Never returns, never yields and never calls the host: only the host's request deadline (an
/// epoch interruption) can stop it. `black_box` keeps the loop from being optimised away.
fn loop_forever() -> ! {
    let mut i: u64 = 0;
    loop {
        i = std::hint::black_box(i.wrapping_add(1));
    }
}
