//! Tests of the component log files: output readable, no fd held, rotation, whole lines under
//! concurrent instances, the delayed append, and failures that never reach the guest.

use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;
use wasmtime_wasi::cli::StdoutStream;

use super::*;

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// Open fds of this process pointing under `dir` (tests run in parallel threads: only this
/// test's own temp dir counts).
fn fds_under(dir: &Path) -> usize {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    std::fs::read_dir("/proc/self/fd")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.starts_with(&dir)))
                .count()
        })
        .unwrap_or(0)
}

fn stdout_log(dir: &Path) -> (RotatingLog, PathBuf) {
    let path = dir.join("c_stdout.txt");
    (
        RotatingLog::new(path.clone(), MAX_LOG_BYTES, KEEP_ROTATED),
        path,
    )
}

#[test]
fn output_is_buffered_and_readable_once_the_instance_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, path) = stdout_log(dir.path());
    let writer = log.writer();
    writer.write(b"first line\nsec");
    writer.write(b"ond line\nno newline");
    assert!(!path.exists(), "small output waits in the buffer");
    drop(writer);
    assert_eq!(read(&path), "first line\nsecond line\nno newline");
    // A second instance appends after it.
    let writer = log.writer();
    writer.write(b"\nthird\n");
    drop(writer);
    assert_eq!(read(&path), "first line\nsecond line\nno newline\nthird\n");
}

#[test]
fn no_fd_is_held_by_a_loaded_component_or_an_idle_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = ComponentLogs::open(&dir.path().join("logs"), "hello").expect("open");
    assert_eq!(fds_under(dir.path()), 0, "loaded: no fd");
    let stdout = logs.stdout.writer();
    let stderr = logs.stderr.writer();
    stdout.write(b"out\n");
    stderr.write(b"err\n");
    assert_eq!(fds_under(dir.path()), 0, "buffering: no fd");
    // Past the buffer: appended at once, and closed again.
    let big = format!("{}\n", "x".repeat(BUFFER_BYTES));
    stdout.write(big.as_bytes());
    let out = dir.path().join("logs/hello_stdout.txt");
    assert_eq!(read(&out).len(), 4 + big.len());
    assert_eq!(fds_under(dir.path()), 0, "after an append: no fd");
    drop((stdout, stderr));
    assert_eq!(read(&dir.path().join("logs/hello_stderr.txt")), "err\n");
    assert_eq!(fds_under(dir.path()), 0, "after the instance: no fd");
}

#[test]
fn a_log_rotates_by_size_and_keeps_a_bounded_number_of_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c_stdout.txt");
    let log = RotatingLog::new(path.clone(), 10, 2);
    for line in [
        "aaaa\n", "bbbb\n", "cccc\n", "dddd\n", "eeee\n", "ffff\n", "gggg\n",
    ] {
        log.append(line.as_bytes()).expect("append");
    }
    assert_eq!(read(&path), "gggg\n");
    assert_eq!(read(&dir.path().join("c_stdout.txt.1")), "eeee\nffff\n");
    assert_eq!(read(&dir.path().join("c_stdout.txt.2")), "cccc\ndddd\n");
    assert!(!dir.path().join("c_stdout.txt.3").exists());
    // Another log on the same file (a new version of the app) sees what it already holds.
    let log = RotatingLog::new(path.clone(), 10, 2);
    log.append(b"hhhh\niiii\n").expect("append");
    assert_eq!(read(&path), "hhhh\niiii\n");
    assert_eq!(read(&dir.path().join("c_stdout.txt.1")), "gggg\n");
    assert_eq!(read(&dir.path().join("c_stdout.txt.2")), "eeee\nffff\n");
    // Through a writer: its buffered output is one append.
    let writer = log.writer();
    writer.write(b"jjjj\n");
    writer.write(b"kkkk\n");
    drop(writer);
    assert_eq!(read(&path), "jjjj\nkkkk\n");
    assert_eq!(read(&dir.path().join("c_stdout.txt.1")), "hhhh\niiii\n");
    assert_eq!(fds_under(dir.path()), 0);
}

#[test]
fn keeping_no_rotated_file_truncates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c_stderr.txt");
    let log = RotatingLog::new(path.clone(), 10, 0);
    log.append(b"aaaa\nbbbb\n").expect("append");
    log.append(b"cccc\n").expect("append");
    assert_eq!(read(&path), "cccc\n");
    assert!(!dir.path().join("c_stderr.txt.1").exists());
}

#[test]
fn concurrent_instances_never_interleave_mid_line() {
    const WRITERS: usize = 8;
    const LINES: usize = 2000;
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, path) = stdout_log(dir.path());
    std::thread::scope(|s| {
        for w in 0..WRITERS {
            let writer = log.writer();
            s.spawn(move || {
                for i in 0..LINES {
                    // Each line in two writes, as a guest printing piecemeal.
                    writer.write(format!("writer {w} line {i} ").as_bytes());
                    writer.write(format!("{}\n", "-".repeat(i % 50)).as_bytes());
                }
            });
        }
    });
    let text = read(&path);
    assert!(text.len() > 4 * BUFFER_BYTES, "several appends per writer");
    let mut next = [0usize; WRITERS];
    for line in text.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts.len(), 5, "a whole line: {line:?}");
        let w: usize = parts[1].parse().expect("writer");
        let i: usize = parts[3].parse().expect("line");
        assert_eq!((parts[0], parts[2]), ("writer", "line"), "{line:?}");
        assert_eq!(parts[4], "-".repeat(i % 50), "{line:?}");
        assert_eq!(i, next[w], "each writer's lines in order");
        next[w] += 1;
    }
    assert_eq!(next, [LINES; WRITERS], "nothing lost");
    assert_eq!(fds_under(dir.path()), 0);
}

#[test]
fn a_line_longer_than_the_buffer_is_written_as_it_is() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, path) = stdout_log(dir.path());
    let writer = log.writer();
    writer.write(b"short\n");
    // A partial line past the buffer is written at once (the buffer stays bounded).
    let long = "y".repeat(BUFFER_BYTES + 10);
    writer.write(long.as_bytes());
    assert_eq!(read(&path), format!("short\n{long}"));
    // Below the buffer, a partial line waits for its end.
    writer.write(b"yyy");
    assert_eq!(read(&path), format!("short\n{long}"));
    writer.write(b"\nnext\n");
    drop(writer);
    assert_eq!(read(&path), format!("short\n{long}yyy\nnext\n"));
}

#[tokio::test(start_paused = true)]
async fn a_live_instances_flushes_are_debounced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, path) = stdout_log(dir.path());
    let mut stream = log.p2_stream();
    let permit = stream.check_write().expect("check_write");
    assert!(permit >= 4096, "{permit}");
    let mut print = |text: &'static [u8]| {
        stream
            .write(bytes::Bytes::from_static(text))
            .expect("write");
        stream.flush().expect("flush");
    };
    // The first flush appends the whole lines at once.
    print(b"sleeping\npartial");
    assert_eq!(read(&path), "sleeping\n");
    // Flushes right after wait for the timer…
    print(b" line\n");
    print(b"second\n");
    assert_eq!(read(&path), "sleeping\n");
    assert_eq!(fds_under(dir.path()), 0);
    // …which appends them while the instance lives.
    tokio::time::sleep(FLUSH_DELAY * 2).await;
    assert_eq!(read(&path), "sleeping\npartial line\nsecond\n");
    // Quiet again: the next flush appends at once.
    print(b"more\n");
    assert_eq!(read(&path), "sleeping\npartial line\nsecond\nmore\n");
    drop(stream);
    assert_eq!(read(&path), "sleeping\npartial line\nsecond\nmore\n");
    assert_eq!(fds_under(dir.path()), 0);
}

#[tokio::test(start_paused = true)]
async fn a_wasip3_stream_appends_on_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, path) = stdout_log(dir.path());
    let mut stream = Box::into_pin(log.async_stream());
    stream.write_all(b"p3 line\nlast").await.expect("write");
    stream.flush().await.expect("flush");
    assert_eq!(read(&path), "p3 line\n");
    stream.shutdown().await.expect("shutdown");
    assert_eq!(read(&path), "p3 line\nlast");
    drop(stream);
    assert_eq!(read(&path), "p3 line\nlast");
}

#[test]
fn a_write_failure_is_warned_once_and_never_reaches_the_guest() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The log path is a directory: every open fails.
    let path = dir.path().join("c_stdout.txt");
    std::fs::create_dir(&path).expect("mkdir");
    let log = RotatingLog::new(path.clone(), MAX_LOG_BYTES, KEEP_ROTATED);
    assert!(log.append(b"lost\n").is_err());
    let mut stream = log.p2_stream();
    for _ in 0..3 {
        stream
            .write(bytes::Bytes::from(format!(
                "{}\n",
                "z".repeat(BUFFER_BYTES)
            )))
            .expect("the guest's write succeeds");
    }
    drop(stream);
    assert_eq!(log.warnings(), 1, "rate-limited");
    assert_eq!(fds_under(dir.path()), 0);
}

#[test]
fn a_deleted_log_directory_is_created_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let logs_dir = dir.path().join("logs");
    let logs = ComponentLogs::open(&logs_dir, "hello").expect("open");
    std::fs::remove_dir_all(&logs_dir).expect("rm");
    let writer = logs.stdout.writer();
    writer.write(b"still here\n");
    drop(writer);
    assert_eq!(read(&logs_dir.join("hello_stdout.txt")), "still here\n");
    assert_eq!(logs.stdout.warnings(), 0);
}

#[test]
fn sanitize_keeps_ids_inside_the_log_dir() {
    assert_eq!(sanitize("hello-world"), "hello-world");
    assert_eq!(sanitize("../../etc/passwd"), "______etc_passwd");
}
