//! Unit tests of tauon: which files are apps, the scan, a directory projected by kubelet (a
//! ConfigMap volume's `..data` swaps) followed with the real watcher, and a status file that
//! cannot be written.

use super::*;
use crate::reconciler::{ReconcileStatus, StatusStream};
use crate::supervisor::tests::supervisor;
use tokio::sync::oneshot;

#[test]
fn only_visible_json_files_are_apps() {
    assert!(is_app_file(Path::new("/d/app.json")));
    assert!(!is_app_file(Path::new("/d/.app.json")));
    assert!(!is_app_file(Path::new("/d/.app.json.swp")));
    assert!(!is_app_file(Path::new("/d/app.json~")));
    assert!(!is_app_file(Path::new("/d/app.json.tmp")));
    assert!(!is_app_file(Path::new("/d/app.toml")));
    assert!(!is_app_file(Path::new("/d/.json")));
    assert!(!is_app_file(Path::new("/d/.tauon-status.json")));
    assert!(!is_app_file(Path::new("/d/..data")));
    assert!(is_projection_swap(Path::new("/d/..data")));
    assert!(!is_projection_swap(Path::new("/d/..data_tmp")));
    assert!(!is_projection_swap(Path::new("/d/app.json")));
}

#[test]
fn scan_reads_app_files_and_skips_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("a.json"), "{}").expect("write");
    std::fs::write(dir.path().join(".b.json"), "{}").expect("write");
    std::fs::write(dir.path().join("c.json~"), "{}").expect("write");
    std::fs::create_dir(dir.path().join("d.json")).expect("mkdir");
    let status = dir.path().join("status.json");
    std::fs::write(&status, "{}").expect("write");
    let found = scan(dir.path(), &status).expect("scan");
    let names: Vec<_> = found.keys().cloned().collect();
    assert_eq!(names, vec![dir.path().join("a.json").display().to_string()]);
}

/// kubelet's atomic writer (`pkg/volume/util/atomic_writer.go`), step for step, on a real
/// directory: a ConfigMap's files live in a hidden timestamped directory, `..data` links to
/// it, and each key is a visible symlink `<key> -> ..data/<key>`.
struct Kubelet {
    dir: PathBuf,
    generation: u32,
}

impl Kubelet {
    /// Project `payload` (key, content) as kubelet does on a ConfigMap update: write a new
    /// timestamped directory, link `..data_tmp` to it and rename that over `..data` (the
    /// atomic switch, seen only on hidden names), create visible links for new keys, remove the
    /// links of keys that went, and remove the old timestamped directory.
    fn project(&mut self, payload: &[(&str, &str)]) {
        let data = self.dir.join("..data");
        let old = std::fs::read_link(&data).ok();
        self.generation += 1;
        let ts = format!(
            "..2026_12_02_10_00_{:02}.{}",
            self.generation,
            123_456_780 + self.generation
        );
        std::fs::create_dir(self.dir.join(&ts)).expect("timestamped dir");
        for (key, content) in payload {
            std::fs::write(self.dir.join(&ts).join(key), content).expect("payload");
        }
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&ts, &tmp).expect("..data_tmp");
        std::fs::rename(&tmp, &data).expect("rename ..data_tmp over ..data");
        for (key, _) in payload {
            let visible = self.dir.join(key);
            if std::fs::symlink_metadata(&visible).is_err() {
                std::os::unix::fs::symlink(Path::new("..data").join(key), &visible)
                    .expect("visible link");
            }
        }
        if let Some(old) = old {
            for entry in std::fs::read_dir(self.dir.join(&old)).expect("old dir") {
                let name = entry.expect("entry").file_name();
                if !payload.iter().any(|(key, _)| *key == name) {
                    std::fs::remove_file(self.dir.join(&name)).expect("remove visible link");
                }
            }
            std::fs::remove_dir_all(self.dir.join(old)).expect("remove old dir");
        }
    }
}

fn app_file(reference: &str, state: &Path) -> String {
    serde_json::json!({
        "reference": reference,
        "address": "127.0.0.1:0",
        "state_dir": state.display().to_string(),
    })
    .to_string()
}

/// The references tauon wants, by file name.
fn wanted(status: &ReconcileStatus) -> Vec<(String, String)> {
    status
        .keys
        .iter()
        .map(|(key, k)| {
            let file = Path::new(key)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let reference = k.spec.as_ref().map(|s| s.reference.clone());
            (file, reference.unwrap_or_default())
        })
        .collect()
}

/// Wait (bounded: a failure, not a measurement) until the reconciler wants exactly `want`.
async fn wait_wanted(status: &mut StatusStream, want: &[(&str, &str)]) {
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(f, r)| (f.to_string(), r.to_string()))
        .collect();
    let reached = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            status.take();
            if wanted(&status.board().snapshot()) == want {
                return;
            }
            if status.changed().await.is_none() {
                return;
            }
        }
    })
    .await;
    assert!(
        reached.is_ok() && wanted(&status.board().snapshot()) == want,
        "tauon wants {:?}, expected {want:?}",
        wanted(&status.board().snapshot())
    );
}

/// tauon running on a directory: what it wants, how to stop it, and its task.
struct Running {
    status: StatusStream,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), TauonError>>,
}

impl Running {
    /// Stop tauon and check that it ends cleanly.
    async fn stop(self) {
        self.stop.send(()).expect("tauon runs");
        let result = self.task.await.expect("tauon task");
        assert!(result.is_ok(), "{result:?}");
    }
}

/// tauon on `dir` (caches in `cache`) writing its status to `status_file`.
fn start(dir: &Path, cache: &Path, status_file: PathBuf) -> Running {
    let reconciler = Reconciler::spawn(supervisor(cache));
    let status = reconciler.status();
    let (stop, stopped) = oneshot::channel::<()>();
    let opts = TauonOptions {
        dir: dir.to_path_buf(),
        status_file: Some(status_file),
        debounce: Duration::from_millis(20),
    };
    let task = tokio::spawn(run(reconciler, opts, async {
        let _ = stopped.await;
    }));
    Running { status, stop, task }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_volume_is_followed_through_kubelets_data_swaps() {
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().join("tauon");
    std::fs::create_dir(&dir).expect("dir");
    let state = work.path().join("state");
    let (v1, v2) = ("127.0.0.1:1/hello:v1", "127.0.0.1:1/hello:v2");
    let mut kubelet = Kubelet {
        dir: dir.clone(),
        generation: 0,
    };
    // The volume as the container finds it at start; a non-JSON key is not an app.
    kubelet.project(&[
        ("hello.json", &app_file(v1, &state.join("hello"))),
        ("notes.txt", "not an app"),
    ]);
    let mut tauon = start(&dir, work.path(), work.path().join("status.json"));
    wait_wanted(&mut tauon.status, &[("hello.json", v1)]).await;

    // An update of one key: only hidden names change (`hello.json -> ..data/hello.json`
    // stays), yet the new content is applied.
    kubelet.project(&[
        ("hello.json", &app_file(v2, &state.join("hello"))),
        ("notes.txt", "not an app"),
    ]);
    wait_wanted(&mut tauon.status, &[("hello.json", v2)]).await;

    // A key added and one removed in one update.
    kubelet.project(&[("other.json", &app_file(v1, &state.join("other")))]);
    wait_wanted(&mut tauon.status, &[("other.json", v1)]).await;

    tauon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_status_file_does_not_stop_tauon() {
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().join("tauon");
    std::fs::create_dir(&dir).expect("dir");
    // A status file under a regular file cannot be written, even by root (as a read-only
    // ConfigMap volume cannot).
    let blocker = work.path().join("blocker");
    std::fs::write(&blocker, "a file, not a directory").expect("write");
    let (v1, v2) = ("127.0.0.1:1/hello:v1", "127.0.0.1:1/hello:v2");
    let state = work.path().join("state");
    std::fs::write(dir.join("hello.json"), app_file(v1, &state)).expect("write");
    let mut tauon = start(&dir, work.path(), blocker.join("status.json"));
    wait_wanted(&mut tauon.status, &[("hello.json", v1)]).await;
    std::fs::write(dir.join("hello.json"), app_file(v2, &state)).expect("write");
    wait_wanted(&mut tauon.status, &[("hello.json", v2)]).await;
    tauon.stop().await;
}

fn status_with(dir: &str) -> Status<'_> {
    Status {
        dir,
        running: true,
        apps: Vec::new(),
        errors: Vec::new(),
    }
}

#[test]
fn a_status_file_that_cannot_be_written_is_reported_once_until_it_can() {
    let work = tempfile::tempdir().expect("tempdir");
    let blocker = work.path().join("blocker");
    std::fs::write(&blocker, "a file, not a directory").expect("write");
    let mut writer = StatusWriter::new(blocker.join("status.json"));
    assert_eq!(writer.write(&status_with("a")), StatusWrite::Failed);
    assert_eq!(writer.write(&status_with("b")), StatusWrite::FailedAgain);
    assert_eq!(writer.write(&status_with("c")), StatusWrite::FailedAgain);
    // Once the way is clear, the status is written (and that is logged).
    std::fs::remove_file(&blocker).expect("remove");
    std::fs::create_dir(&blocker).expect("mkdir");
    assert_eq!(writer.write(&status_with("d")), StatusWrite::Recovered);
    assert_eq!(writer.write(&status_with("e")), StatusWrite::Written);
    let written = std::fs::read_to_string(blocker.join("status.json")).expect("status file");
    assert!(written.contains("\"dir\": \"e\""), "{written}");

    // A status path taken by a directory: the temp file is written but cannot be renamed over
    // it, and is removed rather than left behind.
    let taken = work.path().join("taken");
    std::fs::create_dir(&taken).expect("mkdir");
    let mut writer = StatusWriter::new(taken);
    assert_eq!(writer.write(&status_with("f")), StatusWrite::Failed);
    let mut names: Vec<_> = std::fs::read_dir(work.path())
        .expect("read_dir")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    assert_eq!(names, ["blocker", "taken"], "no temp file is left");
}
