//! Who a caller is: users with passwords, robot accounts with long random
//! tokens, and (in `oidc`) identities vouched for by trusted issuers.
//!
//! Passwords are Argon2id PHC strings. Argon2id because it is memory-hard
//! (GPU guessing costs memory, not just cycles) and pure Rust, so the Worker
//! verifies the same hashes as the native server. The default parameters are
//! OWASP's first recommendation (19 MiB, 2 passes, 1 lane): about 40-50 ms on
//! one native core here and 60-65 ms in wasm under V8, inside a paid Worker's
//! CPU budget but not the free plan's 10 ms (use robot tokens there).
//! Parameters live in each hash, so stronger ones can be chosen per user.
//!
//! Robot tokens carry 256 random bits, so a fast SHA-256 of them is as good as
//! a slow hash: only the digest is configured, compared in constant time.
//!
//! Checking a login is split in two ([`Directory::check`], then
//! [`PasswordCheck::verify`]) so that the shell's platform can run the
//! costly half away from its request threads. Every refusal pays one hash
//! of the usual cost, so timing does not tell which names exist.

use std::collections::HashMap;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use ct_codecs::{Base64UrlSafeNoPadding, Decoder, Encoder, Hex};
use sha2::{Digest as _, Sha256};

use super::config::{RobotConfig, UserConfig};
use crate::platform::Env;

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub groups: Vec<String>,
    pub kind: IdentityKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityKind {
    User,
    Robot,
    Oidc,
    /// A verified TLS client certificate (`auth::certificate`).
    Certificate,
}

/// Argon2id with OWASP's minimum recommended cost.
pub const DEFAULT_MEMORY_KIB: u32 = 19 * 1024;
pub const DEFAULT_PASSES: u32 = 2;
/// Limits on configured hashes: a hash's parameters decide how much memory
/// and CPU every login attempt costs, and an isolate has 128 MB.
const MAX_MEMORY_KIB: u32 = 64 * 1024;
const MAX_PASSES: u32 = 16;
const SALT_BYTES: usize = 16;
const ROBOT_TOKEN_BYTES: usize = 32;
/// Prefix of robot tokens, so that secret scanners can recognise leaked ones.
pub const ROBOT_TOKEN_PREFIX: &str = "pier_";

/// Salt of the decoy hash (any fixed value will do: no password matches it).
const DECOY_SALT: &[u8; SALT_BYTES] = b"pier-decoy-salt!";
/// Output length of pier's hashes (the `argon2` crate's default).
const HASH_OUTPUT_BYTES: usize = 32;

/// Hashes `password` with a fresh salt into a PHC string.
pub fn hash_password(password: &str, memory_kib: u32, passes: u32, env: &dyn Env) -> Result<String, String> {
    let params = Params::new(memory_kib, passes, 1, None).map_err(|e| format!("argon2 parameters: {e}"))?;
    let mut salt = [0u8; SALT_BYTES];
    env.fill_random(&mut salt);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| format!("argon2: {e}"))
}

/// A new robot token and the SHA-256 hex digest to put in the configuration.
pub fn new_robot_token(env: &dyn Env) -> (String, String) {
    let mut raw = [0u8; ROBOT_TOKEN_BYTES];
    env.fill_random(&mut raw);
    let token = format!(
        "{ROBOT_TOKEN_PREFIX}{}",
        // Encoding into a string sized for it cannot fail.
        Base64UrlSafeNoPadding::encode_to_string(raw).unwrap_or_default()
    );
    let digest = robot_token_digest(&token);
    (token, digest)
}

fn robot_token_digest(token: &str) -> String {
    crate::digest::hex(&Sha256::digest(token.as_bytes()))
}

/// Checks a configured hash: Argon2id, within the cost limits.
fn parse_password_hash(user: &str, text: &str) -> Result<PasswordHash, String> {
    let hash = PasswordHash::new(text).map_err(|e| format!("user {user}: password_hash is not a PHC string: {e}"))?;
    if hash.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "user {user}: password_hash must be argon2id (made by `pier auth hash-password`), not {}",
            hash.algorithm
        ));
    }
    let params = Params::try_from(&hash).map_err(|e| format!("user {user}: argon2 parameters: {e}"))?;
    if params.m_cost() > MAX_MEMORY_KIB || params.t_cost() > MAX_PASSES || params.p_cost() != 1 {
        return Err(format!(
            "user {user}: argon2 parameters must stay within m={MAX_MEMORY_KIB} KiB, t={MAX_PASSES}, p=1 \
             (each login costs that much memory and time)"
        ));
    }
    Ok(hash)
}

struct User {
    password_hash: PasswordHash,
    groups: Vec<String>,
    /// Binds refresh tokens to this password: see [`Directory::credential`].
    credential: String,
}

struct Robot {
    token_sha256: [u8; 32],
    groups: Vec<String>,
    credential: String,
}

/// The configured users and robots.
pub struct Directory {
    users: HashMap<String, User>,
    robots: HashMap<String, Robot>,
    /// What refusals of unknown names and wrong robot tokens are checked
    /// against: see [`decoy_hash`].
    decoy: PasswordHash,
}

/// What checking a login takes.
pub enum Check {
    /// Decided without a password hash: a robot's token matched.
    Decided(Identity),
    /// A password hash to compute (CPU heavy: see
    /// [`crate::platform::Env::run_heavy`]).
    Password(Box<PasswordCheck>),
}

/// One Argon2id verification: of a user's password, or of the decoy for an
/// unknown name or a wrong robot token, so that every refusal costs the same
/// and none tells which names exist.
pub struct PasswordCheck {
    hash: PasswordHash,
    secret: String,
    /// Who logs in if the secret matches; `None` for the decoy.
    identity: Option<Identity>,
}

impl PasswordCheck {
    /// The identity, if the secret matches the hash.
    pub fn verify(self) -> Option<Identity> {
        let matched = Argon2::default()
            .verify_password(self.secret.as_bytes(), &self.hash)
            .is_ok();
        self.identity.filter(|_| matched)
    }
}

/// A fingerprint of a credential as configured (a user's password hash, a
/// robot's token digest): recorded in refresh tokens, so that changing or
/// removing the credential revokes them. A SHA-256 of the configured hash
/// reveals nothing about the password or token behind it.
fn fingerprint(kind: &str, name: &str, configured: &str) -> String {
    let mut hasher = Sha256::new();
    for part in ["pier refresh credential", kind, name, configured] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    crate::digest::hex(&hasher.finalize())
}

/// An Argon2id hash no password matches, with the cost most configured users
/// have (the costlier on a tie; the default without users): unknown names
/// are checked against it, so they take as long to refuse as wrong
/// passwords. Its output is zeros rather than the hash of anything: checking
/// a password against it costs the same, and building it costs nothing.
fn decoy_hash<'a>(costs: impl Iterator<Item = &'a Params>) -> Result<PasswordHash, String> {
    let mut seen: Vec<((u32, u32), usize)> = Vec::new();
    for params in costs {
        let cost = (params.m_cost(), params.t_cost());
        match seen.iter_mut().find(|(c, _)| *c == cost) {
            Some((_, count)) => *count += 1,
            None => seen.push((cost, 1)),
        }
    }
    let (memory_kib, passes) = seen
        .into_iter()
        .max_by_key(|&((m, t), count)| (count, u64::from(m) * u64::from(t)))
        .map_or((DEFAULT_MEMORY_KIB, DEFAULT_PASSES), |(cost, _)| cost);
    let b64 =
        |bytes: &[u8]| ct_codecs::Base64NoPadding::encode_to_string(bytes).map_err(|e| format!("the decoy hash: {e}"));
    let text = format!(
        "$argon2id$v=19$m={memory_kib},t={passes},p=1${}${}",
        b64(DECOY_SALT)?,
        b64(&[0u8; HASH_OUTPUT_BYTES])?
    );
    PasswordHash::new(&text).map_err(|e| format!("the decoy hash: {e}"))
}

impl Directory {
    pub fn new(users: &[UserConfig], robots: &[RobotConfig]) -> Result<Directory, String> {
        let mut directory = Directory {
            users: HashMap::new(),
            robots: HashMap::new(),
            decoy: decoy_hash(std::iter::empty())?,
        };
        let mut costs = Vec::new();
        for user in users {
            let hash = parse_password_hash(&user.name, &user.password_hash)?;
            costs.push(Params::try_from(&hash).map_err(|e| format!("user {}: argon2 parameters: {e}", user.name))?);
            let entry = User {
                password_hash: hash,
                groups: user.groups.clone(),
                credential: fingerprint("user", &user.name, user.password_hash.trim()),
            };
            if directory.users.insert(user.name.clone(), entry).is_some() {
                return Err(format!("user {} is configured twice", user.name));
            }
        }
        for robot in robots {
            let mut digest = [0u8; 32];
            let decoded = Hex::decode(&mut digest, robot.token_sha256.trim(), None);
            if !matches!(decoded, Ok(bytes) if bytes.len() == 32) {
                return Err(format!(
                    "robot {}: token_sha256 must be 64 hex digits (made by `pier auth new-robot`)",
                    robot.name
                ));
            }
            if directory.users.contains_key(&robot.name) {
                return Err(format!("{} is both a user and a robot", robot.name));
            }
            let entry = Robot {
                token_sha256: digest,
                groups: robot.groups.clone(),
                credential: fingerprint("robot", &robot.name, &robot.token_sha256.trim().to_ascii_lowercase()),
            };
            if directory.robots.insert(robot.name.clone(), entry).is_some() {
                return Err(format!("robot {} is configured twice", robot.name));
            }
        }
        directory.decoy = decoy_hash(costs.iter())?;
        Ok(directory)
    }

    /// What proving `name` with `secret` takes: a robot's token is checked
    /// here; a password (or a refusal) needs an Argon2id hash.
    pub fn check(&self, name: &str, secret: &str) -> Check {
        let decoy = || PasswordCheck {
            hash: self.decoy.clone(),
            secret: secret.to_string(),
            identity: None,
        };
        if let Some(robot) = self.robots.get(name) {
            let digest = Sha256::digest(secret.as_bytes());
            if ct_codecs::verify(&digest, &robot.token_sha256) {
                return Check::Decided(Identity {
                    name: name.to_string(),
                    groups: robot.groups.clone(),
                    kind: IdentityKind::Robot,
                });
            }
            return Check::Password(Box::new(decoy()));
        }
        match self.users.get(name) {
            Some(user) => Check::Password(Box::new(PasswordCheck {
                hash: user.password_hash.clone(),
                secret: secret.to_string(),
                identity: Some(Identity {
                    name: name.to_string(),
                    groups: user.groups.clone(),
                    kind: IdentityKind::User,
                }),
            })),
            None => Check::Password(Box::new(decoy())),
        }
    }

    /// The identity `name` proves with `secret`, if it does, checked on
    /// this thread.
    pub fn verify(&self, name: &str, secret: &str) -> Option<Identity> {
        match self.check(name, secret) {
            Check::Decided(identity) => Some(identity),
            Check::Password(check) => check.verify(),
        }
    }

    /// The fingerprint of the credential a configured user or robot logs in
    /// with now, for binding refresh tokens to it.
    pub fn credential(&self, name: &str, kind: IdentityKind) -> Option<&str> {
        match kind {
            IdentityKind::User => Some(&self.users.get(name)?.credential),
            IdentityKind::Robot => Some(&self.robots.get(name)?.credential),
            IdentityKind::Oidc | IdentityKind::Certificate => None,
        }
    }

    /// The identity of a configured user or robot, as it stands now (for
    /// refresh tokens: a removed account can no longer refresh).
    pub fn current(&self, name: &str, kind: IdentityKind) -> Option<Identity> {
        let groups = match kind {
            IdentityKind::User => &self.users.get(name)?.groups,
            IdentityKind::Robot => &self.robots.get(name)?.groups,
            IdentityKind::Oidc | IdentityKind::Certificate => return None,
        };
        Some(Identity {
            name: name.to_string(),
            groups: groups.clone(),
            kind,
        })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.users.keys().chain(self.robots.keys()).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestEnv;

    /// Cheap parameters so the tests run fast; the defaults are checked once.
    fn quick_hash(password: &str) -> String {
        hash_password(password, 1024, 1, &TestEnv::at(0)).unwrap()
    }

    fn user(name: &str, hash: String) -> UserConfig {
        UserConfig {
            name: name.into(),
            password_hash: hash,
            groups: vec!["dev".into()],
        }
    }

    #[test]
    fn a_password_verifies_and_a_wrong_one_does_not() {
        let directory = Directory::new(&[user("alice", quick_hash("s3cret pass"))], &[]).unwrap();
        let identity = directory.verify("alice", "s3cret pass").unwrap();
        assert_eq!(identity.name, "alice");
        assert_eq!(identity.groups, ["dev"]);
        assert_eq!(identity.kind, IdentityKind::User);
        assert!(directory.verify("alice", "s3cret pasS").is_none());
        assert!(directory.verify("alice", "").is_none());
        assert!(directory.verify("bob", "s3cret pass").is_none());
    }

    #[test]
    fn hashes_are_salted_argon2id_with_the_chosen_cost() {
        let env = TestEnv::at(0);
        let first = hash_password("same", DEFAULT_MEMORY_KIB, DEFAULT_PASSES, &env).unwrap();
        let second = hash_password("same", DEFAULT_MEMORY_KIB, DEFAULT_PASSES, &env).unwrap();
        assert_ne!(first, second, "each hash has its own salt");
        assert!(first.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{first}");
        let directory = Directory::new(&[user("a", first)], &[]).unwrap();
        assert!(directory.verify("a", "same").is_some());
    }

    fn decoy_cost(directory: &Directory) -> (u32, u32) {
        let params = Params::try_from(&directory.decoy).unwrap();
        (params.m_cost(), params.t_cost())
    }

    #[test]
    fn the_decoy_costs_what_most_users_cost() {
        let directory = Directory::new(&[], &[]).unwrap();
        assert_eq!(decoy_cost(&directory), (DEFAULT_MEMORY_KIB, DEFAULT_PASSES));
        let cheap = |name: &str| user(name, hash_password("x", 1024, 1, &TestEnv::at(0)).unwrap());
        let other = user("c", hash_password("x", 2048, 1, &TestEnv::at(0)).unwrap());
        let directory = Directory::new(&[cheap("a"), cheap("b"), other.clone()], &[]).unwrap();
        assert_eq!(decoy_cost(&directory), (1024, 1), "the cost most users have");
        let directory = Directory::new(&[cheap("a"), other], &[]).unwrap();
        assert_eq!(decoy_cost(&directory), (2048, 1), "the costlier on a tie");
        assert!(directory.verify("nobody", "").is_none());
        assert!(matches!(directory.check("nobody", "x"), Check::Password(_)));
    }

    #[test]
    fn wrong_robot_tokens_pay_a_password_check_and_right_ones_do_not() {
        let (token, digest) = new_robot_token(&TestEnv::at(0));
        let robots = [RobotConfig {
            name: "ci".into(),
            token_sha256: digest,
            groups: vec![],
        }];
        let directory = Directory::new(&[], &robots).unwrap();
        assert!(matches!(directory.check("ci", &token), Check::Decided(_)));
        assert!(matches!(directory.check("ci", "pier_wrong"), Check::Password(_)));
    }

    #[test]
    fn credentials_change_their_fingerprint() {
        let first = Directory::new(&[user("a", quick_hash("one"))], &[]).unwrap();
        let second = Directory::new(&[user("a", quick_hash("two"))], &[]).unwrap();
        let (a, b) = (
            first.credential("a", IdentityKind::User).unwrap(),
            second.credential("a", IdentityKind::User).unwrap(),
        );
        assert_ne!(a, b, "a new password is a new credential");
        assert_eq!(first.credential("b", IdentityKind::User), None);
        assert_eq!(first.credential("a", IdentityKind::Robot), None);
    }

    #[test]
    fn weak_foreign_or_costly_hashes_are_refused_at_load() {
        let too_costly = hash_password("x", MAX_MEMORY_KIB * 2, 1, &TestEnv::at(0)).unwrap();
        for (hash, complaint) in [
            ("plaintext".to_string(), "PHC"),
            (
                "$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA".to_string(),
                "argon2id",
            ),
            (too_costly, "within"),
        ] {
            let err = Directory::new(&[user("a", hash)], &[]).err().unwrap();
            assert!(err.contains(complaint), "{err}");
        }
    }

    #[test]
    fn robot_tokens_verify_by_digest_only() {
        let (token, digest) = new_robot_token(&TestEnv::at(0));
        assert!(token.starts_with(ROBOT_TOKEN_PREFIX));
        assert!(
            token.len() >= ROBOT_TOKEN_PREFIX.len() + 43,
            "256 bits of token: {token}"
        );
        assert!(!digest.contains(&token[5..]), "the digest does not contain the token");
        let robots = [RobotConfig {
            name: "ci".into(),
            token_sha256: digest,
            groups: vec!["ci".into()],
        }];
        let directory = Directory::new(&[], &robots).unwrap();
        let identity = directory.verify("ci", &token).unwrap();
        assert_eq!(
            (identity.kind, identity.groups.as_slice()),
            (IdentityKind::Robot, &["ci".to_string()][..])
        );
        let mut wrong = token.clone();
        wrong.pop();
        wrong.push('A');
        assert!(directory.verify("ci", &wrong).is_none());
        assert!(directory.verify("ci", "").is_none());
    }

    #[test]
    fn duplicate_or_malformed_accounts_are_refused() {
        let robot = |digest: &str| RobotConfig {
            name: "r".into(),
            token_sha256: digest.into(),
            groups: vec![],
        };
        assert!(Directory::new(&[], &[robot("abc")]).is_err());
        let digest = "0".repeat(64);
        assert!(Directory::new(&[], &[robot(&digest), robot(&digest)]).is_err());
        assert!(Directory::new(&[user("r", quick_hash("x"))], &[robot(&digest)]).is_err());
    }
}
