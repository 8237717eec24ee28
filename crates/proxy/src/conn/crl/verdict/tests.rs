//! The pure CRL checks against CAs, devices and CRLs made with rcgen.

use std::time::SystemTime;

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertificateRevocationListParams,
    CrlDistributionPoint, DnType, IsCa, Issuer, KeyIdMethod, KeyPair, RevokedCertParams,
    SerialNumber,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::*;

struct Ca {
    der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![]).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    Ca {
        der: cert.der().to_vec(),
        issuer: Issuer::new(params, key),
    }
}

fn device(ca: &Ca, serial: u64, urls: &[&str]) -> Vec<u8> {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "device");
    params.serial_number = Some(SerialNumber::from(serial));
    if !urls.is_empty() {
        params.crl_distribution_points = vec![CrlDistributionPoint {
            uris: urls.iter().map(|u| u.to_string()).collect(),
        }];
    }
    params.signed_by(&key, &ca.issuer).unwrap().der().to_vec()
}

fn crl(ca: &Ca, revoked: &[u64], next_year: i32) -> Vec<u8> {
    CertificateRevocationListParams {
        this_update: date_time_ymd(2020, 1, 1),
        next_update: date_time_ymd(next_year, 1, 1),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|s| RevokedCertParams {
                serial_number: SerialNumber::from(*s),
                revocation_time: date_time_ymd(2020, 6, 1),
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&ca.issuer)
    .unwrap()
    .der()
    .to_vec()
}

fn parsed(der: &[u8]) -> X509Certificate<'_> {
    X509Certificate::from_der(der).unwrap().1
}

#[test]
fn distribution_points_are_the_http_uris() {
    let ca = ca("Device CA");
    let leaf = device(
        &ca,
        7,
        &["http://crl.example/devices.crl", "ldap://x/cn=crl"],
    );
    assert_eq!(
        distribution_points(&parsed(&leaf)),
        ["http://crl.example/devices.crl"]
    );
    assert!(distribution_points(&parsed(&device(&ca, 8, &[]))).is_empty());
}

#[test]
fn a_verified_crl_revokes_its_serials_only() {
    let ca = ca("Device CA");
    let (good, bad) = (device(&ca, 7, &[]), device(&ca, 9, &[]));
    let list = verify(&crl(&ca, &[9, 11], 2099), &parsed(&ca.der)).expect("verifies");
    let now = SystemTime::now();
    assert_eq!(check(&list, &parsed(&good), now), Outcome::Good);
    assert_eq!(check(&list, &parsed(&bad), now), Outcome::Revoked);
}

#[test]
fn a_crl_from_another_ca_or_past_its_next_update_is_unavailable() {
    let (ca, other) = (ca("Device CA"), ca("Other CA"));
    let err = verify(&crl(&other, &[], 2099), &parsed(&ca.der)).unwrap_err();
    assert!(err.contains("not from the device's issuer"), "{err}");
    let stale = verify(&crl(&ca, &[], 2021), &parsed(&ca.der)).expect("verifies");
    let outcome = check(&stale, &parsed(&device(&ca, 7, &[])), SystemTime::now());
    assert!(matches!(outcome, Outcome::Unavailable(_)), "{outcome:?}");
    assert!(verify(b"garbage", &parsed(&ca.der))
        .unwrap_err()
        .contains("not a CRL"));
}

#[test]
fn a_crl_signed_by_another_key_does_not_verify() {
    let ca1 = ca("Device CA");
    // Same name, other key: a forged CRL.
    let forger = ca("Device CA");
    let err = verify(&crl(&forger, &[7], 2099), &parsed(&ca1.der)).unwrap_err();
    assert!(err.contains("signature does not verify"), "{err}");
}

#[test]
fn decisions_by_mode() {
    let down = Outcome::Unavailable("down".into());
    assert_eq!(
        decide(ClientOcspMode::Off, &Outcome::Revoked),
        Decision::Admit
    );
    for mode in [ClientOcspMode::Prefer, ClientOcspMode::Require] {
        assert_eq!(
            decide(mode, &Outcome::Revoked),
            Decision::Refuse(DenialReason::Revoked)
        );
        assert_eq!(decide(mode, &Outcome::Good), Decision::Admit);
        assert_eq!(decide(mode, &Outcome::NoDistributionPoint), Decision::Admit);
    }
    assert_eq!(decide(ClientOcspMode::Prefer, &down), Decision::Admit);
    assert_eq!(
        decide(ClientOcspMode::Require, &down),
        Decision::Refuse(DenialReason::RevocationUnknown)
    );
}

#[test]
fn fetch_results_are_kept_between_30_s_and_an_hour() {
    let now = SystemTime::now();
    let failed: Fetched = Err("down".into());
    assert_eq!(keep_until(&failed, now), now + Duration::from_secs(30));
    let ca = ca("Device CA");
    let far = Ok(Arc::new(
        verify(&crl(&ca, &[], 2099), &parsed(&ca.der)).unwrap(),
    ));
    assert_eq!(keep_until(&far, now), now + Duration::from_secs(3600));
    let stale = Ok(Arc::new(
        verify(&crl(&ca, &[], 2021), &parsed(&ca.der)).unwrap(),
    ));
    assert_eq!(keep_until(&stale, now), now + Duration::from_secs(30));
}
