//! Crash safety of long runs, on the real binary and real models: SIGKILL at several points of
//! a windowed dense+sparse run, then `--resume`, must give byte-identical `points.jsonl` and
//! `rerank.jsonl` to an uninterrupted run; SIGTERM stops with an `interrupted` manifest and a
//! failed-run metric; a second run into a locked output directory is refused at once; a
//! changed configuration is refused by `--resume`, naming the change.

mod util;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use util::{manifest, run, run_until, stderr};

/// Chunks per window in these runs: the fixture's 150 chunks make 6 windows.
const WINDOW: &str = "25";
/// The fixture: the first chunks of the bundled collection cut short (fewer than all 300: every
/// test here runs it at least twice).
const CHUNKS: usize = 150;

/// A collection without a query file (so the ranking uses the probe) in its own input root.
fn input_root(dir: &Path) -> PathBuf {
    let root = dir.join("in");
    let short = util::short_scifact(dir, "short");
    std::fs::create_dir_all(root.join("docs")).unwrap();
    let corpus = std::fs::read_to_string(short.join("corpus.jsonl")).unwrap();
    let first: String = corpus
        .lines()
        .take(CHUNKS)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(root.join("docs/chunks.jsonl"), first).unwrap();
    root
}

/// A dense+sparse run (no rerank) over `root` into `out` in windows of [`WINDOW`] chunks;
/// `-v` logs the window and stage events the kill points key on.
fn command(root: &Path, out: &Path) -> Command {
    command_with_window(root, out, WINDOW)
}

fn command_with_window(root: &Path, out: &Path, window: &str) -> Command {
    let mut command = util::cpu_run(root, out);
    command
        .args(["--no-rerank", "-v", "--window-chunks", window])
        .env("EMBED_COLLECTIONS_LOG_FORMAT", "text");
    command
}

/// The uninterrupted run's outputs, made once for every test.
fn reference() -> &'static (Vec<u8>, Vec<u8>) {
    static REFERENCE: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let root = input_root(tmp.path());
        let out = tmp.path().join("out");
        run(&mut command(&root, &out), true);
        outputs(&out)
    })
}

fn outputs(out: &Path) -> (Vec<u8>, Vec<u8>) {
    let read = |name: &str| {
        std::fs::read(out.join("docs").join(name))
            .unwrap_or_else(|err| panic!("cannot read {name}: {err}"))
    };
    (read("points.jsonl"), read("rerank.jsonl"))
}

/// SIGKILL at the trigger line, then `--resume` until done; the outputs must equal the
/// uninterrupted run's.
fn kill_and_resume(needles: &[&str], occurrence: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let root = input_root(tmp.path());
    let out = tmp.path().join("out");
    let (mut child, seen) = run_until(command(&root, &out), needles, occurrence, |child| {
        child.kill().unwrap()
    });
    let status = child.wait().unwrap();
    assert!(!status.success(), "killed run must not succeed:\n{seen}");

    // A killed run leaves a `running` manifest naming a dead pid, never a success.
    let killed = manifest(&out);
    assert_eq!(killed["status"], "running", "{killed}");
    assert_eq!(killed["pid"].as_u64(), Some(u64::from(child.id())));
    let metrics = std::fs::read_to_string(out.join("metrics.prom")).unwrap();
    assert!(
        metrics.contains("embed_collections_run_success 0"),
        "{metrics}"
    );

    let resumed = run(command(&root, &out).arg("--resume"), true);
    let (points, ranked) = outputs(&out);
    let (expected_points, expected_ranked) = reference();
    assert!(
        points == *expected_points,
        "points.jsonl after kill at {needles:?} + resume differs from an uninterrupted run"
    );
    assert!(
        ranked == *expected_ranked,
        "rerank.jsonl after kill at {needles:?} + resume differs from an uninterrupted run"
    );
    let done = manifest(&out);
    assert_eq!(done["status"], "ok");
    assert_eq!(done["resumed_from"].as_array().map(Vec::len), Some(1));
    assert_eq!(done["collections"][0]["points"], CHUNKS);
    // No work file or temp file survives a finished run's collection.
    let leftovers: Vec<_> = std::fs::read_dir(out.join(".work/docs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "checkpoint.json")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}\n{}", stderr(&resumed));
}

#[test]
fn sigkill_during_dense_then_resume_is_byte_identical() {
    kill_and_resume(&["window{index=2", "window started"], 1);
}

#[test]
fn sigkill_during_sparse_then_resume_is_byte_identical() {
    // The dense stage of the third window has just finished: SPLADE is running.
    kill_and_resume(&["dense window done"], 3);
}

#[test]
fn sigkill_between_windows_then_resume_is_byte_identical() {
    kill_and_resume(&["window committed"], 4);
}

#[test]
fn sigkill_after_the_points_move_then_resume_is_byte_identical() {
    // Every window is done and points.jsonl is in place; ranking and rerank.jsonl remain.
    kill_and_resume(&["points written"], 1);
}

#[test]
fn sigterm_stops_with_an_interrupted_manifest_and_resume_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = input_root(tmp.path());
    let out = tmp.path().join("out");
    let (mut child, _) = run_until(command(&root, &out), &["window committed"], 2, |child| {
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    });
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(130),
        "documented exit code for interrupted"
    );
    let stopped = manifest(&out);
    assert_eq!(stopped["status"], "interrupted", "{stopped}");
    assert_eq!(stopped["collections"][0]["status"], "interrupted");
    assert!(stopped["finished_at"].is_string());
    let metrics = std::fs::read_to_string(out.join("metrics.prom")).unwrap();
    assert!(
        metrics.contains("embed_collections_run_success 0"),
        "{metrics}"
    );
    assert!(metrics.contains("status=\"interrupted\""), "{metrics}");

    // A changed setting is refused by --resume, naming it, and nothing is touched.
    let refused = run(
        command_with_window(&root, &out, "30").arg("--resume"),
        false,
    );
    assert_eq!(refused.status.code(), Some(2));
    let message = stderr(&refused);
    assert!(
        message.contains("config.input.window_chunks: 25 → 30"),
        "{message}"
    );

    run(command(&root, &out).arg("--resume"), true);
    let (points, ranked) = outputs(&out);
    assert!(
        points == reference().0,
        "points after SIGTERM + resume differ"
    );
    assert!(
        ranked == reference().1,
        "rerank.jsonl after SIGTERM + resume differs"
    );
}

#[test]
fn a_second_run_into_the_same_output_directory_is_refused_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let root = input_root(tmp.path());
    let out = tmp.path().join("out");
    let mut second = None;
    let (child, _) = run_until(command(&root, &out), &["window committed"], 1, |first| {
        let started = std::time::Instant::now();
        let output = command(&root, &out).output().unwrap();
        second = Some((output, started.elapsed(), first.id()));
    });
    let (output, elapsed, pid) = second.unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains("in use by another embed-collections run"),
        "{message}"
    );
    assert!(message.contains(&format!("pid {pid}")), "{message}");
    assert!(
        elapsed < std::time::Duration::from_secs(20),
        "refused without waiting for the first run ({elapsed:?})"
    );
    // The first run completes unharmed: its manifest is its own and says ok.
    let status = child.wait_with_output().unwrap().status;
    assert!(status.success());
    let done = manifest(&out);
    assert_eq!(done["status"], "ok");
    assert_eq!(done["pid"].as_u64(), Some(u64::from(pid)));
    let (points, _) = outputs(&out);
    assert!(points == reference().0);
}

#[test]
fn a_fresh_run_replaces_an_earlier_runs_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let root = input_root(tmp.path());
    let out = tmp.path().join("out");
    // An earlier run's leftovers: a collection this run does not produce, a temp file, and a
    // file of the user's that must stay.
    std::fs::create_dir_all(out.join("gone")).unwrap();
    std::fs::write(out.join("gone/points.jsonl"), "{}\n").unwrap();
    std::fs::write(out.join("manifest.json"), "{\"status\": \"ok\"}\n").unwrap();
    std::fs::write(out.join(".tmp-abc.partial"), "half").unwrap();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    run(&mut command(&root, &out), true);
    assert!(
        !out.join("gone").exists(),
        "stale collection output removed"
    );
    assert!(
        !out.join(".tmp-abc.partial").exists(),
        "orphan temp file removed"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).unwrap(),
        "mine"
    );
    // A dense-only re-run leaves no rerank.jsonl of the earlier run behind.
    run(command(&root, &out).args(["--no-sparse"]), true);
    assert!(!out.join("docs/rerank.jsonl").exists());
    assert_eq!(
        manifest(&out)["collections"][0]["outputs"],
        serde_json::json!(["docs/points.jsonl", "docs/chunk_hashes.jsonl"])
    );
}

#[test]
fn the_window_size_does_not_change_the_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let root = input_root(tmp.path());
    let out = tmp.path().join("out");
    // One window for the whole collection against six of 25.
    run(&mut command_with_window(&root, &out, "10000"), true);
    let (points, ranked) = outputs(&out);
    assert!(points == reference().0, "points depend on the window size");
    assert!(
        ranked == reference().1,
        "rerank.jsonl depends on the window size"
    );
    assert_eq!(manifest(&out)["collections"][0]["windows"], 1);
}

/// Kills a run between windows and returns (tmp, root, out) for the resume that follows.
fn killed_between_windows() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = input_root(tmp.path());
    let out = tmp.path().join("out");
    let (mut child, _) = run_until(command(&root, &out), &["window committed"], 2, |child| {
        child.kill().unwrap()
    });
    assert!(!child.wait().unwrap().success());
    (tmp, root, out)
}

/// Issue 29, finding 2: the fingerprint held each input file's size and mtime, so a chunk
/// edited in place with the same length and its mtime restored (`cp -p`, `rsync -a`,
/// `touch -r`) was resumed, keeping the stale vectors of the windows already done.
#[test]
fn resume_after_a_same_size_edit_with_the_mtime_restored_is_refused() {
    let (_tmp, root, out) = killed_between_windows();
    let file = root.join("docs/chunks.jsonl");
    let before = std::fs::metadata(&file).unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    // The first chunk's text changes, the length does not.
    let at = text.find("\"text\":\"").unwrap() + 8;
    let mut edited = text.clone().into_bytes();
    edited[at] = if edited[at] == b'X' { b'Y' } else { b'X' };
    assert_ne!(edited, text.as_bytes());
    std::fs::write(&file, &edited).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(before.modified().unwrap())
        .unwrap();
    let after = std::fs::metadata(&file).unwrap();
    assert_eq!(
        (after.len(), after.modified().unwrap()),
        (before.len(), before.modified().unwrap()),
        "size and mtime as before the edit"
    );
    let output = run(command(&root, &out).arg("--resume"), false);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains("cannot resume"), "{message}");
    assert!(
        message.contains(&format!("{}.sha256", file.display())),
        "the changed file is named: {message}"
    );
}

/// Issue 29, finding 2: identical content with new inodes and mtimes (a pod retried on a
/// fresh volume, a restored copy) was refused; it resumes, byte-identical to an uninterrupted
/// run.
#[test]
fn resume_after_identical_copies_with_new_inodes_and_mtimes_is_byte_identical() {
    let (tmp, root, out) = killed_between_windows();
    let file = root.join("docs/chunks.jsonl");
    let before = std::fs::metadata(&file).unwrap();
    let copy = tmp.path().join("copy.jsonl");
    // Copied while the original still exists (so the inode cannot be reused), then moved
    // over it.
    std::fs::copy(&file, &copy).unwrap();
    std::fs::rename(&copy, &file).unwrap();
    let an_hour_later = before.modified().unwrap() + std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(an_hour_later)
        .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let after = std::fs::metadata(&file).unwrap();
        assert_ne!(after.ino(), before.ino(), "a new inode");
        assert_ne!(after.modified().unwrap(), before.modified().unwrap());
    }
    let resumed = run(command(&root, &out).arg("--resume"), true);
    let done = manifest(&out);
    assert_eq!(done["status"], "ok", "{}", stderr(&resumed));
    assert_eq!(done["resumed_from"].as_array().map(Vec::len), Some(1));
    assert!(
        done["collections"][0]["resumed_windows"].as_u64() > Some(0),
        "the complete windows were kept: {}",
        done["collections"][0]
    );
    let (points, ranked) = outputs(&out);
    let (expected_points, expected_ranked) = reference();
    assert!(points == *expected_points, "points.jsonl differs");
    assert!(ranked == *expected_ranked, "rerank.jsonl differs");
}
