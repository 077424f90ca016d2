//! `pier auth ...`: the helpers that make what an `[auth]` table needs
//! (password hashes, robot tokens, signing keys). Every decision lives in
//! `pier_core::auth`.

use crate::env::SystemEnv;
use clap::Subcommand;
use pier_core::auth::identity::{hash_password, new_robot_token, DEFAULT_MEMORY_KIB, DEFAULT_PASSES};
use pier_core::auth::token::{new_signing_key, KeyAlgorithm};
use std::io::Read;

#[derive(Subcommand, Debug)]
pub enum AuthCommand {
    /// Hash a password read from standard input (one line), for `[[auth.users]]`.
    HashPassword {
        /// Argon2id memory in KiB: each login costs this much memory.
        #[arg(long, default_value_t = DEFAULT_MEMORY_KIB)]
        memory_kib: u32,
        /// Argon2id passes over that memory.
        #[arg(long, default_value_t = DEFAULT_PASSES)]
        passes: u32,
    },
    /// Create a robot account: prints its token (shown once) and the `[[auth.robots]]` entry.
    NewRobot {
        name: String,
        /// A group of the robot (repeat for several).
        #[arg(long = "group")]
        groups: Vec<String>,
    },
    /// Generate a key that signs tokens: a JWK Set for `auth_signing_keys_file`.
    NewSigningKey {
        /// `es256` or `eddsa`.
        #[arg(long, default_value = "es256")]
        algorithm: String,
    },
}

pub fn run(command: AuthCommand) -> Result<(), String> {
    match command {
        AuthCommand::HashPassword { memory_kib, passes } => {
            let password = read_password(std::io::stdin())?;
            println!("{}", hash_password(&password, memory_kib, passes, &SystemEnv)?);
        }
        AuthCommand::NewRobot { name, groups } => print!("{}", new_robot(&name, &groups)),
        AuthCommand::NewSigningKey { algorithm } => {
            let algorithm = KeyAlgorithm::parse(&algorithm)
                .ok_or_else(|| format!("algorithm {algorithm:?}: use es256 or eddsa"))?;
            println!("{{\"keys\":[{}]}}", new_signing_key(algorithm, &SystemEnv));
        }
    }
    Ok(())
}

/// The first line of `input`, without its line ending.
fn read_password(mut input: impl Read) -> Result<String, String> {
    let mut text = String::new();
    input
        .read_to_string(&mut text)
        .map_err(|e| format!("reading the password from standard input: {e}"))?;
    let password = text.lines().next().unwrap_or("").to_string();
    if password.is_empty() {
        return Err("no password on standard input (e.g. `printf %s \"$PASSWORD\" | pier auth hash-password`)".into());
    }
    Ok(password)
}

/// The robot's token and its configuration entry.
fn new_robot(name: &str, groups: &[String]) -> String {
    let (token, digest) = new_robot_token(&SystemEnv);
    let quoted = |text: &str| toml::Value::String(text.to_string()).to_string();
    let groups: Vec<String> = groups.iter().map(|g| quoted(g)).collect();
    format!(
        "# The robot's token, shown only now: give it to the robot (e.g. as a CI secret).\n\
         token: {token}\n\n\
         # Add to the configuration; pier keeps only the token's digest.\n\
         [[auth.robots]]\n\
         name = {}\n\
         token_sha256 = \"{digest}\"\n\
         groups = [{}]\n",
        quoted(name),
        groups.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use pier_core::auth::{Auth, AuthConfig};

    #[test]
    fn passwords_are_the_first_line_of_input() {
        assert_eq!(read_password("s3cret\n".as_bytes()).unwrap(), "s3cret");
        assert_eq!(read_password("with space\r\nignored".as_bytes()).unwrap(), "with space");
        assert!(read_password("".as_bytes()).is_err());
        assert!(read_password("\nsecond".as_bytes()).is_err());
    }

    #[tokio::test]
    async fn a_new_robot_entry_configures_a_robot_whose_token_logs_in() {
        let printed = new_robot("ci-bot", &["ci".to_string()]);
        let token = printed
            .lines()
            .find_map(|l| l.strip_prefix("token: "))
            .unwrap()
            .to_string();
        let entry = &printed[printed.find("[[auth.robots]]").unwrap()..];
        let config: toml::Table = toml::from_str(entry).unwrap();
        let auth: AuthConfig = config["auth"].clone().try_into().unwrap();
        assert_eq!(auth.robots[0].groups, ["ci"]);
        let jwks = format!("{{\"keys\":[{}]}}", new_signing_key(KeyAlgorithm::Es256, &SystemEnv));
        let auth = Auth::new(auth, &jwks, Arc::new(SystemEnv)).unwrap();
        let identity = auth.login("test", "ci-bot", &token).await.unwrap();
        assert_eq!(identity.groups, ["ci"]);
        assert!(auth.login("test", "ci-bot", "pier_guess").await.is_err());
    }
}
