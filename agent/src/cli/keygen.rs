//! `muster keygen`: prints a new gossip encryption key (32 random bytes, base64) for
//! `-encrypt` / `encrypt`.

use super::{Spec, Ui};

pub const SYNOPSIS: &str = "Generates a new encryption key";

pub fn spec() -> Spec {
    Spec {
        name: "keygen",
        help: HELP,
        flags: Vec::new(),
    }
}

const HELP: &str = "
Usage: muster keygen

  Generates a new 32-byte encryption key that can be used to configure the
  agent to encrypt traffic. The output of this command is already
  in the proper format that the agent expects.
";

pub async fn run(args: Vec<String>, ui: &mut Ui<'_>) -> u8 {
    let spec = spec();
    let parsed = match spec.parse(args, ui) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if !parsed.args.is_empty() {
        ui.error(&format!(
            "Error found unexpected args: [{}]",
            parsed.args.join(" ")
        ));
        return 1;
    }
    ui.output(&crate::gossip::crypto::generate_key());
    0
}

#[cfg(test)]
mod tests {
    use super::super::testing::{args, Captured};
    use super::*;

    #[tokio::test]
    async fn prints_a_usable_key() {
        let mut c = Captured::default();
        assert_eq!(run(args(&[]), &mut c.ui()).await, 0);
        let key = c.out();
        let key = key.trim_end();
        assert_eq!(key.len(), 44);
        assert!(crate::gossip::crypto::Keyring::from_base64(key).is_ok());
    }
}
