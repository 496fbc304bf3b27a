//! Throwaway TLS certificates for end-to-end tests, made with the `openssl` CLI: a CA, a second
//! CA nobody trusts, and leaf certificates signed by either. std only, so that
//! `templater/tests/common` shares this very file (`#[path]`), as it does `procs.rs`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Bound of one `openssl` run.
const OPENSSL_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `openssl ARGS` in `dir` to completion (bounded); panics with its output on failure.
fn openssl(dir: &Path, args: &[&str]) {
    let log = dir.join("openssl.log");
    let out = std::fs::File::create(&log).expect("create openssl.log");
    let err = out.try_clone().expect("clone openssl.log");
    let mut child = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn openssl {args:?} (is the openssl CLI installed?): {e}"));
    let deadline = Instant::now() + OPENSSL_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "openssl {args:?} in {}: {status:?}\n{output}",
        dir.display()
    );
}

/// A directory of PEM files: `ca.pem`/`ca.key`, `other-ca.pem`/`other-ca.key`, and leaves
/// `<name>.pem`/`<name>.key`.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    /// Under `dir/pki`: the CAs `ca` and `other-ca`, and signed by `ca` the leaves `server`
    /// (server auth for IP 127.0.0.1), `named` (server auth for the name `muster.test` only) and
    /// `client` (client auth).
    pub fn new(dir: &Path) -> Pki {
        let dir = dir.join("pki");
        std::fs::create_dir_all(&dir).expect("pki dir");
        let pki = Pki { dir };
        pki.ca("ca");
        pki.ca("other-ca");
        pki.leaf("server", "serverAuth", Some("IP:127.0.0.1"));
        pki.leaf("named", "serverAuth", Some("DNS:muster.test"));
        pki.leaf("client", "clientAuth", None);
        pki
    }

    /// A self-signed CA `<name>.pem` and `<name>.key` (P-256, two days).
    pub fn ca(&self, name: &str) {
        openssl(
            &self.dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-subj",
                &format!("/CN=Muster test {name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
    }

    /// `<name>.pem` and `<name>.key`, signed by the CA `ca`.
    pub fn leaf(&self, name: &str, usage: &str, san: Option<&str>) {
        self.leaf_signed_by("ca", name, usage, san);
    }

    /// `<name>.pem` and `<name>.key` for extended key usage `usage` (`serverAuth`,
    /// `clientAuth`) and subject alternative name `san` (`IP:127.0.0.1`), signed by `ca`.
    pub fn leaf_signed_by(&self, ca: &str, name: &str, usage: &str, san: Option<&str>) {
        openssl(
            &self.dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        let mut ext = format!(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage={usage}\n"
        );
        if let Some(san) = san {
            ext.push_str(&format!("subjectAltName={san}\n"));
        }
        std::fs::write(self.dir.join(format!("{name}.ext")), ext).expect("ext file");
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                &format!("{ca}.pem"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}.pem"),
            ],
        );
    }

    /// The path of `file` in the directory, as a string for flags and config files.
    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }
}
