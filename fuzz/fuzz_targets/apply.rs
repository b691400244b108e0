//! Parse and apply an arbitrary answer to a small tree, then check the invariants that
//! matter most: no panic; a refusal or an I/O error leaves the tree byte for byte as it
//! was; nothing outside the root ever changes; a success touches only the paths the
//! patch names.
//!
//! Input: file content, a NUL byte, then the answer. When the answer has no file header,
//! one for `f.txt` is put in front, so that random hunks meet a real file.
#![no_main]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use libfuzzer_sys::fuzz_target;
use orchestrator_diff::{ApplyError, ApplyOptions};

fn snapshot(root: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).expect("metadata");
            if meta.is_dir() {
                stack.push(path.clone());
                out.insert(path, None);
            } else if meta.file_type().is_symlink() {
                out.insert(
                    path.clone(),
                    Some(
                        fs::read_link(&path)
                            .expect("link")
                            .into_os_string()
                            .into_encoded_bytes(),
                    ),
                );
            } else {
                out.insert(path.clone(), Some(fs::read(&path).expect("read")));
            }
        }
    }
    out
}

fn base() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    let (content, rest) = data.split_at(split);
    let mut answer = String::from_utf8_lossy(rest.get(1..).unwrap_or_default()).into_owned();
    if !answer.contains("--- ") && !answer.contains("=== FILE:") && !answer.contains("diff --git") {
        answer.insert_str(0, "--- a/f.txt\n+++ b/f.txt\n");
    }
    let Ok(patch) = orchestrator_diff::parse(&answer) else {
        return;
    };

    static N: AtomicU64 = AtomicU64::new(0);
    let case = base().join(format!(
        "orch-diff-fuzz-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let root = case.join("root");
    let outside = case.join("outside");
    fs::create_dir_all(root.join("sub")).expect("mkdir");
    fs::create_dir_all(&outside).expect("mkdir");
    fs::write(root.join("f.txt"), content).expect("write");
    fs::write(root.join("sub/g.txt"), b"one\ntwo\nthree\n").expect("write");
    fs::write(outside.join("secret.txt"), b"secret\n").expect("write");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&outside, root.join("out")).expect("symlink");

    let before_root = snapshot(&root);
    let before_outside = snapshot(&outside);
    let opts = ApplyOptions {
        sync: false,
        max_file_bytes: 1 << 20,
        ..ApplyOptions::default()
    };
    let result = orchestrator_diff::apply(&patch, &root, &opts);
    assert_eq!(
        snapshot(&outside),
        before_outside,
        "something outside the root changed"
    );
    match result {
        Err(ApplyError::Refused(_))
        | Err(ApplyError::Io {
            tree_restored: true, ..
        }) => {
            assert_eq!(snapshot(&root), before_root, "a failed apply changed the tree");
        }
        Err(e @ ApplyError::Io { .. }) => panic!("tree not restored: {e}"),
        Ok(_) => {
            let named: Vec<PathBuf> = patch.paths().map(|p| root.join(p.as_str())).collect();
            let after = snapshot(&root);
            for path in after.keys().chain(before_root.keys()) {
                let changed = before_root.get(path) != after.get(path);
                let allowed = named.iter().any(|n| n == path || n.starts_with(path));
                assert!(!changed || allowed, "unnamed path changed: {}", path.display());
            }
        }
    }
    let _ = fs::remove_dir_all(&case);
});
