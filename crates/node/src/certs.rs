//! The cluster CA and node certificates for peer mutual TLS
//! (`uptime-node certs init-ca` and `uptime-node certs node`).
//!
//! Every node certificate carries the name `uptime-peer` (peers authenticate by
//! the cluster CA, not by address) and the node's id as `node-<id>`.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

use crate::error::Error;

const CA_NAME: &str = "uptime-cluster CA";
pub const PEER_NAME: &str = "uptime-peer";

fn cert_err(e: rcgen::Error) -> Error {
    Error::Cert { message: e.to_string() }
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), Error> {
    let io = |source| Error::WriteFile { path: path.to_owned(), source };
    if path.exists() {
        return Err(Error::WriteFile {
            path: path.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "exists; not overwriting"),
        });
    }
    std::fs::write(path, contents).map_err(io)?;
    if secret {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    Ok(())
}

/// Creates `ca.pem` and `ca.key` in `dir`. Refuses to overwrite.
pub fn init_ca(dir: &Path) -> Result<(PathBuf, PathBuf), Error> {
    std::fs::create_dir_all(dir).map_err(|source| Error::WriteFile { path: dir.to_owned(), source })?;
    let key = KeyPair::generate().map_err(cert_err)?;
    let cert = ca_params().self_signed(&key).map_err(cert_err)?;
    let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
    write_file(&key_path, &key.serialize_pem(), true)?;
    write_file(&cert_path, &cert.pem(), false)?;
    Ok((cert_path, key_path))
}

/// Issues `node<id>.pem` and `node<id>.key` in `dir`, signed by the CA there.
/// `hosts` are extra names or IP addresses to put in the certificate.
pub fn issue_node(dir: &Path, id: u64, hosts: &[String]) -> Result<(PathBuf, PathBuf), Error> {
    let ca_key_path = dir.join("ca.key");
    let ca_key_pem = std::fs::read_to_string(&ca_key_path)
        .map_err(|source| Error::ReadFile { path: ca_key_path.clone(), source })?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(cert_err)?;
    let issuer = Issuer::new(ca_params(), ca_key);

    let mut names = vec![PEER_NAME.to_string(), format!("node-{id}")];
    names.extend(hosts.iter().cloned());
    let mut params = CertificateParams::new(names).map_err(cert_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("node-{id}"));
    params.distinguished_name = dn;
    params.extended_key_usages =
        vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().map_err(cert_err)?;
    let cert = params.signed_by(&key, &issuer).map_err(cert_err)?;
    let (cert_path, key_path) = (dir.join(format!("node{id}.pem")), dir.join(format!("node{id}.key")));
    write_file(&key_path, &key.serialize_pem(), true)?;
    write_file(&cert_path, &cert.pem(), false)?;
    Ok((cert_path, key_path))
}
