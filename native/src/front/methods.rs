//! The gRPC methods the front serves: etcd's v3 services by their wire names.

use std::collections::HashMap;
use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    Unary,
    /// One request, a stream of responses (Maintenance.Snapshot, Election.Observe).
    ServerStream,
    /// Both directions stream (Watch, LeaseKeepAlive).
    Bidi,
}

impl CallKind {
    pub fn name(self) -> &'static str {
        match self {
            CallKind::Unary => "unary",
            CallKind::ServerStream => "server_stream",
            CallKind::Bidi => "bidi",
        }
    }
}

pub const SERVICES: [&str; 8] = [
    "etcdserverpb.KV",
    "etcdserverpb.Watch",
    "etcdserverpb.Lease",
    "etcdserverpb.Cluster",
    "etcdserverpb.Maintenance",
    "etcdserverpb.Auth",
    "v3electionpb.Election",
    "v3lockpb.Lock",
];

use CallKind::{Bidi, ServerStream, Unary};

/// (full path, kind). The index in this table is the method id handed to Python.
pub const METHODS: &[(&str, CallKind)] = &[
    ("/etcdserverpb.KV/Range", Unary),
    ("/etcdserverpb.KV/Put", Unary),
    ("/etcdserverpb.KV/DeleteRange", Unary),
    ("/etcdserverpb.KV/Txn", Unary),
    ("/etcdserverpb.KV/Compact", Unary),
    ("/etcdserverpb.Watch/Watch", Bidi),
    ("/etcdserverpb.Lease/LeaseGrant", Unary),
    ("/etcdserverpb.Lease/LeaseRevoke", Unary),
    ("/etcdserverpb.Lease/LeaseKeepAlive", Bidi),
    ("/etcdserverpb.Lease/LeaseTimeToLive", Unary),
    ("/etcdserverpb.Lease/LeaseLeases", Unary),
    ("/etcdserverpb.Cluster/MemberAdd", Unary),
    ("/etcdserverpb.Cluster/MemberRemove", Unary),
    ("/etcdserverpb.Cluster/MemberUpdate", Unary),
    ("/etcdserverpb.Cluster/MemberList", Unary),
    ("/etcdserverpb.Cluster/MemberPromote", Unary),
    ("/etcdserverpb.Maintenance/Alarm", Unary),
    ("/etcdserverpb.Maintenance/Status", Unary),
    ("/etcdserverpb.Maintenance/Defragment", Unary),
    ("/etcdserverpb.Maintenance/Hash", Unary),
    ("/etcdserverpb.Maintenance/HashKV", Unary),
    ("/etcdserverpb.Maintenance/Snapshot", ServerStream),
    ("/etcdserverpb.Maintenance/MoveLeader", Unary),
    ("/etcdserverpb.Maintenance/Downgrade", Unary),
    ("/etcdserverpb.Auth/AuthEnable", Unary),
    ("/etcdserverpb.Auth/AuthDisable", Unary),
    ("/etcdserverpb.Auth/AuthStatus", Unary),
    ("/etcdserverpb.Auth/Authenticate", Unary),
    ("/etcdserverpb.Auth/UserAdd", Unary),
    ("/etcdserverpb.Auth/UserGet", Unary),
    ("/etcdserverpb.Auth/UserList", Unary),
    ("/etcdserverpb.Auth/UserDelete", Unary),
    ("/etcdserverpb.Auth/UserChangePassword", Unary),
    ("/etcdserverpb.Auth/UserGrantRole", Unary),
    ("/etcdserverpb.Auth/UserRevokeRole", Unary),
    ("/etcdserverpb.Auth/RoleAdd", Unary),
    ("/etcdserverpb.Auth/RoleGet", Unary),
    ("/etcdserverpb.Auth/RoleList", Unary),
    ("/etcdserverpb.Auth/RoleDelete", Unary),
    ("/etcdserverpb.Auth/RoleGrantPermission", Unary),
    ("/etcdserverpb.Auth/RoleRevokePermission", Unary),
    ("/v3electionpb.Election/Campaign", Unary),
    ("/v3electionpb.Election/Proclaim", Unary),
    ("/v3electionpb.Election/Leader", Unary),
    ("/v3electionpb.Election/Observe", ServerStream),
    ("/v3electionpb.Election/Resign", Unary),
    ("/v3lockpb.Lock/Lock", Unary),
    ("/v3lockpb.Lock/Unlock", Unary),
];

/// Method id and kind for a request path.
pub fn lookup(path: &str) -> Option<(u16, CallKind)> {
    static INDEX: OnceLock<HashMap<&'static str, (u16, CallKind)>> = OnceLock::new();
    INDEX
        .get_or_init(|| {
            METHODS
                .iter()
                .enumerate()
                .map(|(i, (p, k))| (*p, (i as u16, *k)))
                .collect()
        })
        .get(path)
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_belongs_to_a_listed_service() {
        for (path, _) in METHODS {
            let service = path[1..].split('/').next().unwrap();
            assert!(SERVICES.contains(&service), "{path}");
        }
        assert_eq!(lookup("/etcdserverpb.KV/Put"), Some((1, CallKind::Unary)));
        assert_eq!(lookup("/etcdserverpb.KV/Nope"), None);
    }
}
