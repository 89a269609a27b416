"""etcd's v3 errors: the gRPC code and exact message of each (etcd's api/v3rpc/rpctypes).

Clients map these messages back to typed errors, so the strings must match etcd byte for byte.
Each constant is an ``EtcdError`` (code, message); ``err.exc()`` makes the ``GrpcError`` to
raise or return.
"""

from __future__ import annotations

from typing import NamedTuple

from raftkv.status import GrpcError, StatusCode


class EtcdError(NamedTuple):
    code: StatusCode
    message: str

    def exc(self) -> GrpcError:
        """A fresh exception carrying this error."""
        return GrpcError(self.code, self.message)

    def matches(self, err: object) -> bool:
        """True if ``err`` is a GrpcError with this code and message."""
        return isinstance(err, GrpcError) and err.code == self.code and err.message == self.message


_IA = StatusCode.INVALID_ARGUMENT
_FP = StatusCode.FAILED_PRECONDITION
_UN = StatusCode.UNAVAILABLE

# KV requests
EMPTY_KEY = EtcdError(_IA, "etcdserver: key is not provided")
KEY_NOT_FOUND = EtcdError(_IA, "etcdserver: key not found")
VALUE_PROVIDED = EtcdError(_IA, "etcdserver: value is provided")
LEASE_PROVIDED = EtcdError(_IA, "etcdserver: lease is provided")
TOO_MANY_OPS = EtcdError(_IA, "etcdserver: too many operations in txn request")
DUPLICATE_KEY = EtcdError(_IA, "etcdserver: duplicate key given in txn request")
INVALID_SORT_OPTION = EtcdError(_IA, "etcdserver: invalid sort option")
COMPACTED = EtcdError(
    StatusCode.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted"
)
FUTURE_REV = EtcdError(
    StatusCode.OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision"
)
NO_SPACE = EtcdError(StatusCode.RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded")

# Leases
LEASE_NOT_FOUND = EtcdError(StatusCode.NOT_FOUND, "etcdserver: requested lease not found")
LEASE_EXIST = EtcdError(_FP, "etcdserver: lease already exists")
LEASE_TTL_TOO_LARGE = EtcdError(StatusCode.OUT_OF_RANGE, "etcdserver: too large lease TTL")

# Watch
WATCH_CANCELED = EtcdError(StatusCode.CANCELLED, "etcdserver: watch canceled")

# Cluster membership
MEMBER_EXIST = EtcdError(_FP, "etcdserver: member ID already exist")
PEER_URL_EXIST = EtcdError(_FP, "etcdserver: Peer URLs already exists")
MEMBER_NOT_ENOUGH_STARTED = EtcdError(
    _FP, "etcdserver: re-configuration failed due to not enough started members"
)
MEMBER_BAD_URLS = EtcdError(_IA, "etcdserver: given member URLs are invalid")
MEMBER_NOT_FOUND = EtcdError(StatusCode.NOT_FOUND, "etcdserver: member not found")
MEMBER_NOT_LEARNER = EtcdError(_FP, "etcdserver: can only promote a learner member")
LEARNER_NOT_READY = EtcdError(
    _FP, "etcdserver: can only promote a learner member which is in sync with leader"
)
TOO_MANY_LEARNERS = EtcdError(_FP, "etcdserver: too many learner members in cluster")

# Requests and limits
REQUEST_TOO_LARGE = EtcdError(_IA, "etcdserver: request is too large")
TOO_MANY_REQUESTS = EtcdError(StatusCode.RESOURCE_EXHAUSTED, "etcdserver: too many requests")

# Auth
ROOT_USER_NOT_EXIST = EtcdError(_FP, "etcdserver: root user does not exist")
ROOT_ROLE_NOT_EXIST = EtcdError(_FP, "etcdserver: root user does not have root role")
USER_ALREADY_EXIST = EtcdError(_FP, "etcdserver: user name already exists")
USER_EMPTY = EtcdError(_IA, "etcdserver: user name is empty")
USER_NOT_FOUND = EtcdError(_FP, "etcdserver: user name not found")
ROLE_ALREADY_EXIST = EtcdError(_FP, "etcdserver: role name already exists")
ROLE_NOT_FOUND = EtcdError(_FP, "etcdserver: role name not found")
ROLE_EMPTY = EtcdError(_IA, "etcdserver: role name is empty")
AUTH_FAILED = EtcdError(_IA, "etcdserver: authentication failed, invalid user ID or password")
PERMISSION_DENIED = EtcdError(StatusCode.PERMISSION_DENIED, "etcdserver: permission denied")
ROLE_NOT_GRANTED = EtcdError(_FP, "etcdserver: role is not granted to the user")
PERMISSION_NOT_GRANTED = EtcdError(_FP, "etcdserver: permission is not granted to the role")
AUTH_NOT_ENABLED = EtcdError(_FP, "etcdserver: authentication is not enabled")
INVALID_AUTH_TOKEN = EtcdError(StatusCode.UNAUTHENTICATED, "etcdserver: invalid auth token")
INVALID_AUTH_MGMT = EtcdError(_IA, "etcdserver: invalid auth management")

# Server state
NO_LEADER = EtcdError(_UN, "etcdserver: no leader")
NOT_LEADER = EtcdError(_FP, "etcdserver: not leader")
LEADER_CHANGED = EtcdError(_UN, "etcdserver: leader changed")
NOT_CAPABLE = EtcdError(_UN, "etcdserver: not capable")
STOPPED = EtcdError(_UN, "etcdserver: server stopped")
TIMEOUT = EtcdError(_UN, "etcdserver: request timed out")
TIMEOUT_DUE_TO_LEADER_FAIL = EtcdError(
    _UN, "etcdserver: request timed out, possibly due to previous leader failure"
)
TIMEOUT_DUE_TO_CONNECTION_LOST = EtcdError(
    _UN, "etcdserver: request timed out, possibly due to connection lost"
)
UNHEALTHY = EtcdError(_UN, "etcdserver: unhealthy cluster")
CORRUPT = EtcdError(StatusCode.DATA_LOSS, "etcdserver: corrupt cluster")
NOT_SUPPORTED_FOR_LEARNER = EtcdError(_UN, "etcdserver: rpc not supported for learner")
BAD_LEADER_TRANSFEREE = EtcdError(_FP, "etcdserver: bad leader transferee")

# Not etcd's: a committed entry whose payload does not parse (every member answers the same).
MALFORMED_REQUEST = EtcdError(_IA, "raftkv: malformed request")
