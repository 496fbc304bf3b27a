//! The `templater` binary without an agent: the file and env backends, `-noop`, resource
//! errors, conf.d/templates picked up while running, SIGHUP and SIGTERM, and no partial file
//! when the process is killed in the middle of writing.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

fn file_args(confdir: &Confdir, data: &Path, mode: &[&str]) -> Vec<String> {
    let mut args = strings(&[
        "-backend",
        "file",
        "-file",
        &data.display().to_string(),
        "-confdir",
        &confdir.path.display().to_string(),
    ]);
    args.extend(strings(mode));
    args
}

#[test]
fn file_backend_watch_picks_up_data_templates_and_resources() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.yaml");
    std::fs::write(&data, "app:\n  name: shop\n  hosts: [a, b]\n").unwrap();
    let confdir = Confdir::new(dir.path());
    confdir.template(
        "app.hbs",
        "name={{getv \"/app/name\"}} hosts={{join (getvs \"/app/hosts/*\") \",\"}}\n",
    );
    let out = dir.path().join("app.conf");
    let reloads = dir.path().join("reloads");
    confdir.resource(
        "app.toml",
        &format!(
            "[template]\nsrc = \"app.hbs\"\ndest = \"{}\"\nkeys = [\"/app\"]\nreload_cmd = \"echo r >> {}\"\n",
            out.display(),
            reloads.display()
        ),
    );
    let mut t = spawn_templater(
        &file_args(&confdir, &data, &["-watch"]),
        &[],
        dir.path().join("t.log"),
    );
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let until = |what: &str, t: &Proc, f: &dyn Fn() -> bool| {
        if eventually(WAIT, || f().then_some(())).is_none() {
            panic!("{what}: not within {WAIT:?}\n{}", t.output());
        }
    };
    until("first render", &t, &|| {
        read(&out) == "name=shop hosts=a,b\n"
    });
    until("one reload", &t, &|| read(&reloads) == "r\n");

    // The data file changes.
    std::fs::write(&data, "app:\n  name: shop2\n  hosts: [a, b, c]\n").unwrap();
    until("the data change", &t, &|| {
        read(&out) == "name=shop2 hosts=a,b,c\n"
    });

    // The template changes (notify on templates/).
    confdir.template("app.hbs", "NAME={{toUpper (getv \"/app/name\")}}\n");
    until("the template change", &t, &|| read(&out) == "NAME=SHOP2\n");

    // A new resource appears (notify on conf.d/); a broken one is reported and skipped.
    let out2 = dir.path().join("second.conf");
    confdir.resource(
        "second.toml",
        &format!(
            "[template]\nsrc = \"app.hbs\"\ndest = \"{}\"\nkeys = [\"/app\"]\n",
            out2.display()
        ),
    );
    confdir.resource(
        "broken.toml",
        "[template]\nsrc = \"app.hbs\"\ndest = \"/tmp/x\"\nmode = \"rw\"\n",
    );
    until("the new resource", &t, &|| read(&out2) == "NAME=SHOP2\n");
    until("the broken resource reported", &t, &|| {
        let log = t.output();
        log.contains("broken.toml") && log.contains("template.mode")
    });

    // SIGHUP re-reads too: change the template without notify seeing a new name.
    confdir.template("app.hbs", "v3 {{getv \"/app/name\"}}\n");
    t.signal(nix::sys::signal::Signal::SIGHUP);
    until("after SIGHUP", &t, &|| read(&out) == "v3 shop2\n");

    t.signal(nix::sys::signal::Signal::SIGTERM);
    let status = t
        .wait_exit(Duration::from_secs(10))
        .expect("exits on SIGTERM");
    assert!(status.success(), "{status:?}\n{}", t.output());
}

#[test]
fn onetime_reports_bad_resources_and_still_writes_the_good_ones() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.json");
    std::fs::write(&data, r#"{"app": {"port": 8080}}"#).unwrap();
    let confdir = Confdir::new(dir.path());
    confdir.template("ok.hbs", "port {{getv \"/app/port\"}}\n");
    confdir.template("strict.hbs", "port {{getv \"/app/missing\"}}\n");
    let good = dir.path().join("good.conf");
    confdir.resource(
        "good.toml",
        &format!(
            "[template]\nsrc = \"ok.hbs\"\ndest = \"{}\"\nkeys = [\"/app\"]\n",
            good.display()
        ),
    );
    confdir.resource(
        "bad.toml",
        "[template]\nsrc = \"ok.hbs\"\ndest = \"/tmp/x\"\nuid = \"root\"\n",
    );
    confdir.resource(
        "strict.toml",
        &format!(
            "[template]\nsrc = \"strict.hbs\"\ndest = \"{}\"\nkeys = [\"/app\"]\n",
            dir.path().join("strict.conf").display()
        ),
    );
    let (code, out) = run_templater(
        &file_args(&confdir, &data, &["-onetime"]),
        &[],
        dir.path().join("t.log"),
    );
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(std::fs::read_to_string(&good).unwrap(), "port 8080\n");
    assert!(
        out.contains("bad.toml") && out.contains("template.uid"),
        "{out}"
    );
    assert!(
        out.contains("strict.hbs") && out.contains("/app/missing"),
        "the strict error names template and key: {out}"
    );
    assert!(!dir.path().join("strict.conf").exists());

    // Only the good one: exit 0.
    std::fs::remove_file(confdir.path.join("conf.d/bad.toml")).unwrap();
    std::fs::remove_file(confdir.path.join("conf.d/strict.toml")).unwrap();
    let (code, out) = run_templater(
        &file_args(&confdir, &data, &["-onetime"]),
        &[],
        dir.path().join("t2.log"),
    );
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn env_backend_and_noop() {
    let dir = tempfile::tempdir().unwrap();
    let confdir = Confdir::new(dir.path());
    confdir.template(
        "e.hbs",
        "host={{getv \"/myapp/db/host\"}} {{#each (ls \"/myapp/db\")}}{{this}};{{/each}}\n",
    );
    let dest = dir.path().join("e.conf");
    confdir.resource(
        "e.toml",
        &format!(
            "[template]\nsrc = \"e.hbs\"\ndest = \"{}\"\nkeys = [\"/myapp/db\"]\n",
            dest.display()
        ),
    );
    let env = vec![
        ("MYAPP_DB_HOST".to_string(), "db1".to_string()),
        ("MYAPP_DB_PORT".to_string(), "5432".to_string()),
    ];
    let base = strings(&[
        "-backend",
        "env",
        "-confdir",
        &confdir.path.display().to_string(),
        "-onetime",
    ]);
    let mut noop = base.clone();
    noop.push("-noop".into());
    let (code, out) = run_templater(&noop, &env, dir.path().join("noop.log"));
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("+host=db1 host;port;"),
        "the diff is printed: {out}"
    );
    assert!(!dest.exists(), "-noop writes nothing");
    let (code, out) = run_templater(&base, &env, dir.path().join("real.log"));
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        std::fs::read_to_string(&dest).unwrap(),
        "host=db1 host;port;\n"
    );
}

#[test]
fn sync_only_writes_without_check_or_reload() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.yaml");
    std::fs::write(&data, "a: 1\n").unwrap();
    let confdir = Confdir::new(dir.path());
    confdir.template("t.hbs", "a={{getv \"/a\"}}\n");
    let dest = dir.path().join("t.conf");
    let marker = dir.path().join("ran");
    confdir.resource(
        "t.toml",
        &format!(
            "[template]\nsrc = \"t.hbs\"\ndest = \"{}\"\nkeys = [\"/\"]\ncheck_cmd = \"false\"\nreload_cmd = \"touch {}\"\n",
            dest.display(),
            marker.display()
        ),
    );
    let (code, out) = run_templater(
        &file_args(&confdir, &data, &["-onetime"]),
        &[],
        dir.path().join("1.log"),
    );
    assert_eq!(code, Some(1), "check_cmd false rejects: {out}");
    assert!(!dest.exists());
    let (code, out) = run_templater(
        &file_args(&confdir, &data, &["-onetime", "-sync-only"]),
        &[],
        dir.path().join("2.log"),
    );
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "a=1\n");
    assert!(!marker.exists(), "no reload with -sync-only");
}

/// SIGKILL at many points of a large write: the destination is always the whole old file or
/// the whole new one, never a prefix of either.
#[test]
fn a_killed_process_never_leaves_a_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.yaml");
    let confdir = Confdir::new(dir.path());
    // ~3.5 MB per render.
    confdir.template(
        "big.hbs",
        "{{#each (seq 1 100000)}}{{getv \"/v\"}} line {{this}} of a large generated file\n{{/each}}",
    );
    let dest = dir.path().join("big.conf");
    confdir.resource(
        "big.toml",
        &format!(
            "[template]\nsrc = \"big.hbs\"\ndest = \"{}\"\nkeys = [\"/\"]\n",
            dest.display()
        ),
    );
    let expected = |v: &str| -> String {
        (1..=100000)
            .map(|i| format!("{v} line {i} of a large generated file\n"))
            .collect()
    };
    // A complete first version.
    std::fs::write(&data, "v: old\n").unwrap();
    let args = file_args(&confdir, &data, &["-onetime"]);
    let started = std::time::Instant::now();
    let (code, out) = run_templater(&args, &[], dir.path().join("first.log"));
    assert_eq!(code, Some(0), "{out}");
    // Kill points spread over a whole run (start-up, render, write, fsync, rename).
    let run_ms = started.elapsed().as_millis() as u64;
    let versions = [expected("old"), expected("new")];
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), versions[0]);

    let mut completed = 0;
    let mut killed = 0;
    let delays: Vec<u64> = (1..=12).map(|k| run_ms * k / 10).collect();
    for (round, delay_ms) in delays.iter().enumerate() {
        let v = if round % 2 == 0 { "new" } else { "old" };
        std::fs::write(&data, format!("v: {v}\n")).unwrap();
        let mut p = spawn_templater(&args, &[], dir.path().join(format!("kill-{round}.log")));
        std::thread::sleep(Duration::from_millis(*delay_ms));
        if p.running() {
            p.kill9();
            killed += 1;
        } else {
            completed += 1;
            let _ = p.wait_exit(Duration::from_secs(1));
        }
        let now = std::fs::read_to_string(&dest).expect("the destination always exists");
        assert!(
            versions.contains(&now),
            "round {round} (kill after {delay_ms} ms): a partial file of {} bytes",
            now.len()
        );
    }
    eprintln!("a run takes {run_ms} ms; {killed} runs killed, {completed} completed");
    assert!(killed >= 6, "most runs were killed mid-way");
    // Stage files of killed runs may remain (they are dotfiles next to the destination);
    // the destination itself was never partial.
}
