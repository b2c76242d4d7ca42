//! The layers stay in their rooms: the HTTP crate parses, calls a use case of
//! `lightwidget_commands` and maps its error. It never writes to the log itself.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read the source folder") {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Lines of `api/src` that write to the log or shred keys: an append request, a stream
/// write, or a call of the port's `append`/`shred`.
fn writes_to_the_log(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    sources(root, &mut files);
    assert!(files.len() > 10, "found only {} source files", files.len());
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read a source file");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            let writes = ["AppendRequest", "StreamWrite", ".append(", ".shred("]
                .iter()
                .any(|w| code.contains(w));
            if writes {
                found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn no_handler_writes_to_the_log() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = writes_to_the_log(&root);
    assert!(
        found.is_empty(),
        "api writes to the log itself; move this into a use case of lightwidget-commands:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_finds_an_append() {
    let dir = std::env::temp_dir().join(format!("lw-layers-{}", std::process::id()));
    let nested = dir.join("routes");
    std::fs::create_dir_all(&nested).expect("temp folder");
    for i in 0..11 {
        std::fs::write(dir.join(format!("f{i}.rs")), "fn f() {}\n").expect("write");
    }
    std::fs::write(
        nested.join("bad.rs"),
        "// app.store.append(x) in a comment is fine\nasync fn h() { app.store.append(r).await; }\n",
    )
    .expect("write");
    let found = writes_to_the_log(&dir);
    std::fs::remove_dir_all(&dir).expect("clean up");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("bad.rs:2"), "{found:?}");
}
