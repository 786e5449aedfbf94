//! The `tally-check` command: its verdicts as exit statuses.

use std::process::Command;

fn run(text: &str, args: &[&str]) -> (i32, String) {
    let dir = std::env::temp_dir().join(format!("tally-check-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("h{}.txt", text.len()));
    std::fs::write(&file, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tally-check"))
        .arg(&file)
        .args(args)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap(), text)
}

#[test]
fn exit_statuses_say_the_verdict() {
    let (code, out) = run(
        "limit 1\n1 checkout a 0 10 granted\n1 checkin a 11 12 released\n",
        &[],
    );
    assert_eq!((code, out.starts_with("linearizable")), (0, true), "{out}");
    let over = "limit 1\n1 checkout a 0 10 granted\n2 checkout b 5 15 granted\n";
    let (code, out) = run(over, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("op 1 (client 2: checkout of b"), "{out}");
    let free = "limit 2\n1 checkout a 0 10 granted\n2 checkout b 20 30 denied\n";
    assert_eq!(run(free, &[]).0, 1);
    assert_eq!(run(free, &["--unchecked-denials"]).0, 0);
    assert_eq!(run(over, &["--max-steps", "1"]).0, 2);
    let (code, out) = run("limit 1\n1 checkout a 0 10 maybe\n", &[]);
    assert_eq!(code, 2);
    assert!(out.contains("line 2"), "{out}");
    assert_eq!(run(over, &["--bogus"]).0, 2);
}
