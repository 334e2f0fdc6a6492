//! Certificates and TLS 1.3 configuration (rustls) for mutual TLS.
//!
//! A deployment has one CA. The daemon's certificate names `localhost`,
//! 127.0.0.1 and ::1 (extended key usage serverAuth); each client certificate
//! (clientAuth) carries its role as exactly one URI subject alternative name
//! `urn:voucherd:role:<role>`, which the daemon reads after rustls has checked
//! the chain. `generate` makes a development set with rcgen: the CA valid
//! `CA_VALIDITY_DAYS`, the others `LEAF_VALIDITY_DAYS`. A certificate is
//! named by its `fingerprint` (SHA-256 of the DER, hex) in the deny-list.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::domain::op::Role;
use crate::error::Error;

/// ALPN protocol name of voucherd over QUIC, binary (bincode) frames.
pub const ALPN: &[u8] = b"voucherd/1";
/// ALPN protocol name of the JSON encoding: the same frames, JSON bodies.
pub const ALPN_JSON: &[u8] = b"voucherd-json/1";
const ROLE_URI_PREFIX: &str = "urn:voucherd:role:";
/// Days a generated CA certificate is valid.
pub const CA_VALIDITY_DAYS: i64 = 3650;
/// Days a generated server or client certificate is valid.
pub const LEAF_VALIDITY_DAYS: i64 = 730;

/// SHA-256 of a certificate's DER, lowercase hex: how the deny-list names it
/// (`openssl x509 -in FILE -outform DER | sha256sum` prints the same).
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    hex::encode(fingerprint_bytes(cert))
}

/// SHA-256 of a certificate's DER: the certificate part of a `Caller`.
pub fn fingerprint_bytes(cert: &CertificateDer<'_>) -> [u8; 32] {
    ring::digest::digest(&ring::digest::SHA256, cert.as_ref())
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

/// The fingerprint of the first certificate of a PEM file.
pub fn fingerprint_of_file(path: &Path) -> Result<String, Error> {
    Ok(fingerprint(&load_certs(path)?[0]))
}

/// Validity from an hour ago (clocks differ) to `days` from now.
fn bounded(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
}

/// A client certificate for `role` signed by the CA, with `name` in its
/// common name; its PEM and its key's PEM.
fn client_certificate(
    role: Role,
    name: &str,
    ca: &rcgen::Certificate,
    ca_key: &KeyPair,
) -> Result<(String, String), Error> {
    let rc = |e: rcgen::Error| tls_error("certificate generation", e);
    let key = KeyPair::generate().map_err(rc)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rc)?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("voucherd {name}"));
    let uri = format!("{ROLE_URI_PREFIX}{role}").try_into().map_err(rc)?;
    params.subject_alt_names.push(SanType::URI(uri));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    bounded(&mut params, LEAF_VALIDITY_DAYS);
    let cert = params.signed_by(&key, ca, ca_key).map_err(rc)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn tls_error(what: &str, error: impl std::fmt::Display) -> Error {
    Error::InvalidInput(format!("{what}: {error}"))
}

/// File names inside a certificate folder.
pub struct CertPaths {
    pub dir: PathBuf,
}

impl CertPaths {
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }
    /// A client's files are named after the role (`district:500101` → `district-500101`).
    pub fn client_cert(&self, role: Role) -> PathBuf {
        self.dir
            .join(format!("{}.pem", role.to_string().replace(':', "-")))
    }
    pub fn client_key(&self, role: Role) -> PathBuf {
        self.dir
            .join(format!("{}.key", role.to_string().replace(':', "-")))
    }
}

/// A client certificate added by `add_client`: `<role>-<name>.pem`/`.key`
/// (`gateway-gw-2.pem`), beside the role's first one (`gateway.pem`).
impl CertPaths {
    pub fn named_client_cert(&self, role: Role, name: &str) -> PathBuf {
        self.dir
            .join(format!("{}-{name}.pem", role.to_string().replace(':', "-")))
    }
    pub fn named_client_key(&self, role: Role, name: &str) -> PathBuf {
        self.dir
            .join(format!("{}-{name}.key", role.to_string().replace(':', "-")))
    }
}

/// Bytes of a certificate name (`--name`) at most.
pub const CERT_NAME_BYTES_MAX: usize = 64;

/// Adds one client certificate for `role`, named `name` (letters, digits,
/// `-`, `_`), signed by the CA already in `dir` (`ca.pem`, `ca.key`); no other
/// file is touched. Refuses a name already used. Returns the certificate's path.
pub fn add_client(dir: &Path, role: Role, name: &str) -> Result<PathBuf, Error> {
    let valid = !name.is_empty()
        && name.len() <= CERT_NAME_BYTES_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return Err(Error::InvalidInput(format!(
            "--name {name:?}: 1 to {CERT_NAME_BYTES_MAX} letters, digits, '-' or '_'"
        )));
    }
    let paths = CertPaths {
        dir: dir.to_owned(),
    };
    let (cert_path, key_path) = (
        paths.named_client_cert(role, name),
        paths.named_client_key(role, name),
    );
    if cert_path.exists() || key_path.exists() {
        return Err(Error::InvalidInput(format!(
            "{} already exists; pick another --name",
            cert_path.display()
        )));
    }
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|e| {
            Error::InvalidInput(format!(
                "{}: {e}; adding a certificate needs the folder's CA and its key",
                path.display()
            ))
        })
    };
    let ca_key_path = dir.join("ca.key");
    let ca_key = KeyPair::from_pem(&read(&ca_key_path)?)
        .map_err(|e| tls_error(&ca_key_path.display().to_string(), e))?;
    let ca_params = CertificateParams::from_ca_cert_pem(&read(&paths.ca_cert())?)
        .map_err(|e| tls_error(&paths.ca_cert().display().to_string(), e))?;
    // Re-signed with the same name and key: what signing a leaf needs.
    let ca = ca_params
        .self_signed(&ca_key)
        .map_err(|e| tls_error("CA", e))?;
    let (cert, key) = client_certificate(role, &format!("{role} {name}"), &ca, &ca_key)?;
    std::fs::write(&cert_path, cert)?;
    write_private(&key_path, &key)?;
    Ok(cert_path)
}

fn write_private(path: &Path, text: &str) -> Result<(), Error> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(path)?, text.as_bytes())?;
    Ok(())
}

/// Creates a development CA, the server certificate and one client certificate
/// per role in `dir` (a district certificate for each code in `districts`).
/// A folder that already holds a CA is refused: replacing it would cut off
/// every client of a running deployment (`generate_replacing` does it).
pub fn generate(dir: &Path, districts: &[crate::domain::ids::DistrictCode]) -> Result<(), Error> {
    let paths = CertPaths {
        dir: dir.to_owned(),
    };
    if paths.ca_cert().exists() {
        return Err(Error::InvalidInput(format!(
            "{} already holds a CA ({}); replacing it cuts off every client it signed: \
             give --force to replace it",
            dir.display(),
            paths.ca_cert().display()
        )));
    }
    generate_replacing(dir, districts)
}

/// `generate`, replacing a CA and every key already in `dir`.
pub fn generate_replacing(
    dir: &Path,
    districts: &[crate::domain::ids::DistrictCode],
) -> Result<(), Error> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Storage(format!("cannot create the folder {}: {e}", dir.display())))?;
    let paths = CertPaths {
        dir: dir.to_owned(),
    };
    let rc = |e: rcgen::Error| tls_error("certificate generation", e);
    let ca_key = KeyPair::generate().map_err(rc)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(rc)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "voucherd development CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    bounded(&mut ca_params, CA_VALIDITY_DAYS);
    let ca = ca_params.self_signed(&ca_key).map_err(rc)?;
    std::fs::write(paths.ca_cert(), ca.pem())?;
    write_private(&dir.join("ca.key"), &ca_key.serialize_pem())?;

    let server_key = KeyPair::generate().map_err(rc)?;
    let mut server_params = CertificateParams::new(vec!["localhost".to_string()]).map_err(rc)?;
    server_params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::V4(
            std::net::Ipv4Addr::LOCALHOST,
        )));
    server_params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::V6(
            std::net::Ipv6Addr::LOCALHOST,
        )));
    server_params
        .distinguished_name
        .push(DnType::CommonName, "voucherd");
    server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    bounded(&mut server_params, LEAF_VALIDITY_DAYS);
    let server = server_params
        .signed_by(&server_key, &ca, &ca_key)
        .map_err(rc)?;
    std::fs::write(paths.server_cert(), server.pem())?;
    write_private(&paths.server_key(), &server_key.serialize_pem())?;

    let mut roles = vec![
        Role::Gateway,
        Role::Bureau,
        Role::Auditor,
        Role::Platform,
        Role::Training,
    ];
    roles.extend(districts.iter().map(|&code| Role::District(code)));
    for role in roles {
        let (cert, key) = client_certificate(role, &role.to_string(), &ca, &ca_key)?;
        std::fs::write(paths.client_cert(role), cert)?;
        write_private(&paths.client_key(role), &key)?;
    }
    Ok(())
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_error(&path.display().to_string(), e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(&path.display().to_string(), e))?;
    if certs.is_empty() {
        return Err(Error::InvalidInput(format!(
            "{} holds no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| tls_error(&path.display().to_string(), e))
}

fn roots(ca: &Path) -> Result<Arc<rustls::RootCertStore>, Error> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(ca)? {
        roots
            .add(cert)
            .map_err(|e| tls_error("CA certificate", e))?;
    }
    Ok(Arc::new(roots))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The daemon's TLS: TLS 1.3 only, client certificates required and checked against the CA.
pub fn server_config(certs: &Path) -> Result<rustls::ServerConfig, Error> {
    let paths = CertPaths {
        dir: certs.to_owned(),
    };
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots(&paths.ca_cert())?,
        provider(),
    )
    .build()
    .map_err(|e| tls_error("client verifier", e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_error("TLS versions", e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            load_certs(&paths.server_cert())?,
            load_key(&paths.server_key())?,
        )
        .map_err(|e| tls_error("server certificate", e))?;
    config.alpn_protocols = vec![ALPN.to_vec(), ALPN_JSON.to_vec()];
    Ok(config)
}

/// A client's TLS: trusts the deployment CA, presents the role's certificate.
pub fn client_config(ca: &Path, cert: &Path, key: &Path) -> Result<rustls::ClientConfig, Error> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_error("TLS versions", e))?
        .with_root_certificates(roots(ca)?)
        .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
        .map_err(|e| tls_error("client certificate", e))?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

/// The role a (chain-verified) client certificate carries: exactly one role
/// URI, or it is refused (which of two would win is not the holder's choice).
pub fn role_of(cert: &CertificateDer<'_>) -> Result<Role, String> {
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| e.to_string())?;
    let names = parsed
        .subject_alternative_name()
        .map_err(|e| e.to_string())?
        .ok_or("the certificate has no subject alternative names")?;
    let mut roles = names
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) => uri.strip_prefix(ROLE_URI_PREFIX),
            _ => None,
        });
    let role = roles
        .next()
        .ok_or("the certificate carries no voucherd role")?;
    if roles.next().is_some() {
        return Err("the certificate carries more than one voucherd role".into());
    }
    role.parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_client_certificates_carry_their_role() {
        let dir = tempfile::tempdir().unwrap();
        let district = "500101".parse().unwrap();
        generate(dir.path(), &[district]).unwrap();
        let paths = CertPaths {
            dir: dir.path().to_owned(),
        };
        for role in [
            Role::Gateway,
            Role::Bureau,
            Role::Auditor,
            Role::Platform,
            Role::Training,
            Role::District(district),
        ] {
            let cert = &load_certs(&paths.client_cert(role)).unwrap()[0];
            assert_eq!(role_of(cert).unwrap(), role);
        }
        let server = &load_certs(&paths.server_cert()).unwrap()[0];
        assert!(
            role_of(server).is_err(),
            "the server certificate has no role"
        );
        assert!(server_config(dir.path()).is_ok());
        assert!(client_config(
            &paths.ca_cert(),
            &paths.client_cert(Role::Gateway),
            &paths.client_key(Role::Gateway)
        )
        .is_ok());
    }

    fn parsed_usages(path: &Path) -> (bool, bool, i64) {
        let der = &load_certs(path).unwrap()[0];
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        let usages = cert
            .extended_key_usage()
            .unwrap()
            .expect("an extended key usage")
            .value;
        let validity = cert.validity();
        let days = (validity.not_after.timestamp() - validity.not_before.timestamp()) / 86_400;
        (usages.server_auth, usages.client_auth, days)
    }

    /// Issue 17 item 13: the server certificate is for serverAuth only, the
    /// clients' for clientAuth only, and none is valid for more than its
    /// bound (before: no key usage, valid to the year 4096).
    #[test]
    fn generated_certificates_carry_their_key_usage_and_a_bounded_validity() {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path(), &[]).unwrap();
        let paths = CertPaths {
            dir: dir.path().to_owned(),
        };
        let (server_auth, client_auth, days) = parsed_usages(&paths.server_cert());
        assert!(server_auth && !client_auth);
        assert!(days <= LEAF_VALIDITY_DAYS, "{days} days");
        for role in [Role::Gateway, Role::Bureau, Role::Auditor] {
            let (server_auth, client_auth, days) = parsed_usages(&paths.client_cert(role));
            assert!(client_auth && !server_auth, "{role}");
            assert!(days <= LEAF_VALIDITY_DAYS, "{role}: {days} days");
        }
        let der = &load_certs(&paths.ca_cert()).unwrap()[0];
        let (_, ca) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        let validity = ca.validity();
        let days = (validity.not_after.timestamp() - validity.not_before.timestamp()) / 86_400;
        assert!(days <= CA_VALIDITY_DAYS, "CA: {days} days");
    }

    /// Issue 17 item 13: a certificate with two role URIs is refused (before:
    /// the first one won).
    #[test]
    fn a_certificate_with_two_roles_is_refused() {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        for role in ["gateway", "bureau"] {
            params.subject_alt_names.push(SanType::URI(
                format!("{ROLE_URI_PREFIX}{role}").try_into().unwrap(),
            ));
        }
        let cert = params.self_signed(&key).unwrap();
        let why = role_of(cert.der()).unwrap_err();
        assert!(why.contains("more than one"), "{why}");
    }

    /// Issue 16 item 3: a second gateway certificate is added under its own
    /// name, signed by the existing CA, every other file unchanged.
    #[test]
    fn a_named_client_certificate_is_added_beside_the_others() {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path(), &[]).unwrap();
        let before: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
            .collect();
        let cert = add_client(dir.path(), Role::Gateway, "gw-2").unwrap();
        assert_eq!(cert, dir.path().join("gateway-gw-2.pem"));
        for (path, bytes) in &before {
            assert_eq!(&std::fs::read(path).unwrap(), bytes, "{}", path.display());
        }
        assert_eq!(
            role_of(&load_certs(&cert).unwrap()[0]).unwrap(),
            Role::Gateway
        );
        assert!(add_client(dir.path(), Role::Gateway, "gw-2").is_err());
        assert!(add_client(dir.path(), Role::Gateway, "../x").is_err());
        // It chains to the CA: the server's verifier accepts it.
        let roots = roots(&dir.path().join("ca.pem")).unwrap();
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider())
                .build()
                .unwrap();
        let leaf = load_certs(&cert).unwrap().remove(0);
        verifier
            .verify_client_cert(&leaf, &[], rustls::pki_types::UnixTime::now())
            .expect("the new certificate chains to the existing CA");
    }
}
