//! A killed `apply` never leaves a partial file: every managed file is whole, old or new, and no
//! temporary file is left behind.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Scratch;

const FILES: usize = 6;
const SIZE: usize = 2 << 20;

fn recipe(s: &Scratch, name: &str, fill: char) -> std::path::PathBuf {
    let content: String = std::iter::repeat_n(fill, SIZE).collect();
    let mut text = String::from("states:\n");
    for i in 0..FILES {
        text.push_str(&format!(
            "  - {{id: f{i}, module: linux.file, parameter: {{path: \"@/out/f{i}\", content: \"{content}\"}}}}\n"
        ));
    }
    s.recipe(name, &text)
}

fn check_whole(s: &Scratch) {
    for entry in std::fs::read_dir(s.path("out")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(name.starts_with('f') && !name.contains("opsagent"), "stray file {name}");
        let data = std::fs::read(entry.path()).unwrap();
        assert_eq!(data.len(), SIZE, "{name} is partial");
        assert!(data.iter().all(|&b| b == data[0]) && (data[0] == b'a' || data[0] == b'b'), "{name} mixes contents");
    }
}

#[test]
fn killed_apply_never_leaves_a_partial_file() {
    let s = Scratch::new();
    std::fs::create_dir(s.path("out")).unwrap();
    let recipes = [recipe(&s, "a.yaml", 'a'), recipe(&s, "b.yaml", 'b')];
    let run = |r: &std::path::Path| {
        Command::new(common::bin())
            .arg("apply")
            .arg(r)
            .arg("--state-dir")
            .arg(s.path("state"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };

    let start = Instant::now();
    assert!(run(&recipes[0]).wait().unwrap().success());
    let full = start.elapsed();
    check_whole(&s);

    // Kill at fractions of a full run, alternating contents so each kill interrupts rewrites.
    for k in 1..=10u32 {
        let mut child = run(&recipes[(k % 2) as usize]);
        std::thread::sleep(full.mul_f64(f64::from(k) / 11.0).max(Duration::from_millis(1)));
        let _ = child.kill();
        let _ = child.wait();
        check_whole(&s);
    }
}
