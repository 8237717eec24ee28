//! Dropping root: once every port is bound, switch to the configured `user`
//! and `group`, as nginx, HAProxy and Mosquitto do.
//!
//! The switch happens before the async runtime starts, while the process
//! has a single thread, so no thread keeps root (with glibc `setuid` would
//! cover every thread anyway). Supplementary groups come from the group
//! database (`initgroups`), so a key readable by Debian's `ssl-cert` group
//! stays readable. Afterwards moat checks that it cannot become root again.

use std::ffi::CString;

use nix::unistd::{Gid, Group, Uid, User};

/// The account to run as, looked up by name or numeric id.
#[derive(Debug, Clone)]
pub struct Account {
    /// The user's name, as the account database spells it.
    pub user: String,
    /// Its user id.
    pub uid: Uid,
    /// The group's name.
    pub group: String,
    /// The group id.
    pub gid: Gid,
}

/// Looks up `user` and `group` (default: the user's primary group).
pub fn resolve(user: &str, group: Option<&str>) -> Result<Account, String> {
    let found = match user.parse::<u32>() {
        Ok(id) => User::from_uid(Uid::from_raw(id)),
        Err(_) => User::from_name(user),
    }
    .map_err(|e| format!("user: cannot look up {user:?}: {e}"))?;
    let found = found.ok_or_else(|| {
        format!(
            "user: no such user {user:?}\n  hint: create it (useradd --system --no-create-home {user}), or remove `user:`"
        )
    })?;
    let (group_name, gid) = match group {
        None => {
            let name = Group::from_gid(found.gid)
                .ok()
                .flatten()
                .map(|g| g.name)
                .unwrap_or_else(|| found.gid.to_string());
            (name, found.gid)
        }
        Some(g) => {
            let looked = match g.parse::<u32>() {
                Ok(id) => Group::from_gid(Gid::from_raw(id)),
                Err(_) => Group::from_name(g),
            }
            .map_err(|e| format!("group: cannot look up {g:?}: {e}"))?;
            let looked = looked.ok_or_else(|| {
                format!("group: no such group {g:?}\n  hint: create it (groupadd --system {g}), or remove `group:` to use {user}'s primary group")
            })?;
            (looked.name, looked.gid)
        }
    };
    Ok(Account {
        user: found.name,
        uid: found.uid,
        group: group_name,
        gid,
    })
}

/// What [`switch`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Switched {
    /// The process already ran as the account.
    Already,
    /// It switched from root to the account.
    FromRoot,
}

/// Switches the process to `account`. Call it only while the process has
/// one thread.
pub fn switch(account: &Account) -> Result<Switched, String> {
    let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
    if uid == account.uid && gid == account.gid {
        return Ok(Switched::Already);
    }
    if !uid.is_root() {
        return Err(format!(
            "user: switching to {} needs moat to start as root, but it runs as uid {uid}\n  hint: start moat as root (it drops to {} once the ports are bound), or remove `user:` and grant the binary CAP_NET_BIND_SERVICE for ports below 1024",
            account.user, account.user
        ));
    }
    let name = CString::new(account.user.as_str())
        .map_err(|_| format!("user: {:?} contains a NUL byte", account.user))?;
    nix::unistd::initgroups(&name, account.gid).map_err(|e| {
        format!(
            "cannot set the supplementary groups of {}: {e}",
            account.user
        )
    })?;
    nix::unistd::setgid(account.gid)
        .map_err(|e| format!("cannot switch to group {}: {e}", account.group))?;
    nix::unistd::setuid(account.uid)
        .map_err(|e| format!("cannot switch to user {}: {e}", account.user))?;
    // Paranoia, as OpenSSH does: the switch must be irreversible.
    if !account.uid.is_root() && nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err(format!(
            "switched to user {} but could become root again; refusing to run",
            account.user
        ));
    }
    Ok(Switched::FromRoot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_root_by_name_and_by_id() {
        let a = resolve("root", None).expect("root exists");
        assert!(a.uid.is_root());
        assert_eq!(a.gid, Gid::from_raw(0));
        let b = resolve("0", Some("0")).expect("by id");
        assert_eq!(b.user, "root");
    }

    #[test]
    fn unknown_accounts_are_named_with_a_hint() {
        let e = resolve("no-such-user-moat-test", None).unwrap_err();
        assert!(e.contains("no such user \"no-such-user-moat-test\""), "{e}");
        assert!(e.contains("useradd"), "{e}");
        let e = resolve("root", Some("no-such-group-moat-test")).unwrap_err();
        assert!(e.contains("no such group"), "{e}");
    }

    #[test]
    fn switching_to_the_current_account_is_a_no_op() {
        let me = nix::unistd::geteuid();
        let account = resolve(&me.to_string(), Some(&nix::unistd::getegid().to_string()))
            .expect("the current account");
        assert_eq!(switch(&account), Ok(Switched::Already));
    }
}
