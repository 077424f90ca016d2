//! The modules of each crate form layers that only look down: a module may
//! use the modules listed before it in its crate's order and no others, so
//! the dependency graph has no cycle and reads bottom to top
//! (docs/architecture.md draws it). This test reads every `crate::` path in
//! the sources of core and of both shells, outside comments and test
//! modules, and names each one that points up.

use std::path::{Path, PathBuf};

/// Core's top-level modules, bottom first, grouped by layer.
const CORE: &[&[&str]] = &[
    // Leaves: vocabulary every layer shares.
    &["error", "glob", "time", "digest", "names", "platform", "body"],
    // What is stored and the rules about it.
    &[
        "manifest",
        "retention",
        "namespace_policy",
        "records",
        "layout",
        "upload_id",
    ],
    // The storage port, the collector's handshake over it, and the records
    // kept beside the registry's own (last pulls, quota usage), and the
    // memory of tags served to pull-only clients.
    &["store", "handshake", "pulls", "quota", "tag_cache"],
    // The upload state machine.
    &["upload"],
    // Every registry operation over a store.
    &["registry"],
    // Beside the registry: who may do what, collection, other registries.
    &["auth", "gc", "remote", "signing"],
    // Around the registry: the pull-through cache and what others are told.
    &["mirror", "events", "sync", "archive"],
    // The HTTP mapping.
    &["api"],
    // One deployment assembled from settings and the shell's ports.
    &["deployment"],
];

/// The native server's modules: adapters, then the configuration file that
/// gathers their settings, then the commands that read it.
const NATIVE: &[&[&str]] = &[
    &[
        "env",
        "background",
        "remote",
        "metrics",
        "store",
        "tls",
        "http",
        "listen",
    ],
    &["config"],
    &["cmd"],
];

/// The Worker's modules: JavaScript glue, the ports core needs, the
/// deployment built from vars, and the entry points.
const EDGE: &[&[&str]] = &[
    &[
        "js_body",
        "hot_blobs",
        "js_error",
        "streams",
        "env",
        "per_isolate",
        "counted",
    ],
    &["config", "fetch", "r2", "cache", "http_shell", "background"],
    &["deployment"],
    &["events", "gc", "sync", "archive", "test_routes"],
    &["entry"],
];

/// Modules outside the order: test support, compiled for tests only.
const UNRANKED: &[&str] = &["testing"];

fn rank(order: &[&[&str]], module: &str) -> Option<usize> {
    order.iter().flat_map(|layer| layer.iter()).position(|m| *m == module)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a source file without its comments and its unit tests (by
/// convention the `#[cfg(test)]` module at the end of the file).
fn code_lines(text: &str) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        let code = match line.find("//") {
            // A `//` inside a string (a URL) is kept; good enough for paths.
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        };
        lines.push((number + 1, code.to_string()));
    }
    lines
}

/// The top-level modules named by `crate::` paths in `code`, including the
/// ones inside `use crate::{a, b::c}` groups.
fn used_modules(code: &str) -> Vec<String> {
    let mut used = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != "self" {
                    used.push(name);
                }
            }
        } else {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                used.push(name);
            }
        }
    }
    used
}

/// Every `crate::` path of the crate at `dir` that points up in `order`, or
/// at a module the order lacks.
fn check(dir: &str, order: &[&[&str]]) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut upward = Vec::new();
    let mut unknown = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str().to_str().unwrap();
        let module = first.strip_suffix(".rs").unwrap_or(first);
        if matches!(module, "lib" | "main") || UNRANKED.contains(&module) {
            continue;
        }
        let Some(own) = rank(order, module) else {
            unknown.push(format!("{}: module `{module}` is in no layer", relative.display()));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        // A multi-line `use crate::{...}` group is read as one line.
        let lines = code_lines(&text);
        let mut index = 0;
        while index < lines.len() {
            let (number, mut code) = lines[index].clone();
            if code.contains("crate::{") {
                while !code.contains('}') && index + 1 < lines.len() {
                    index += 1;
                    code.push_str(&lines[index].1);
                }
            }
            for used in used_modules(&code) {
                if used == module || UNRANKED.contains(&used.as_str()) {
                    continue;
                }
                match rank(order, &used) {
                    Some(theirs) if theirs < own => {}
                    Some(_) => upward.push(format!("{}:{number}: `{module}` uses `{used}`", relative.display())),
                    None => unknown.push(format!(
                        "{}:{number}: `crate::{used}` is in no layer",
                        relative.display()
                    )),
                }
            }
            index += 1;
        }
    }
    assert!(
        unknown.is_empty(),
        "add these modules to the order of {dir} in this file:\n{}",
        unknown.join("\n")
    );
    assert!(
        upward.is_empty(),
        "in {dir}, a module may only use modules below it (the order in this file, docs/architecture.md):\n{}",
        upward.join("\n")
    );
}

#[test]
fn core_paths_point_down() {
    check(".", CORE);
}

#[test]
fn native_server_paths_point_down() {
    check("../native-server", NATIVE);
}

#[test]
fn edge_worker_paths_point_down() {
    check("../edge-worker", EDGE);
}

#[test]
fn the_checker_sees_paths_and_groups() {
    assert_eq!(used_modules("use crate::store::{Store, PutMode};"), ["store"]);
    assert_eq!(used_modules("use crate::{digest::Digest, names};"), ["digest", "names"]);
    assert_eq!(used_modules("let x = crate::api::token::rfc3339(1);"), ["api"]);
    let lines = code_lines("use crate::a;\n// crate::b\nx(); // crate::c\n#[cfg(test)]\nmod tests { use crate::d; }");
    let code: Vec<&str> = lines.iter().map(|(_, code)| code.as_str()).collect();
    assert_eq!(code, ["use crate::a;", "x(); "]);
}
