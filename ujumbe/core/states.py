"""The one normalized message life cycle, and how each dialect names its states.

Every channel and every dialect speaks in its own codes; inside Ujumbe there is
only ``State``. Channels translate their receipts *into* it, dialects translate
it *out* to their clients, and the rules about which change may follow which
live here and nowhere else.
"""

from __future__ import annotations

from enum import Enum


class State(str, Enum):
    ACCEPTED = "accepted"  # validated and stored, not yet queued (e.g. scheduled)
    QUEUED = "queued"  # waiting for a dispatch worker
    SUBMITTED = "submitted"  # the operator acknowledged it; a receipt is pending
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"  # the operator tried and could not deliver
    FAILED = "failed"  # never reached the operator (technical failure, retries exhausted)
    REJECTED = "rejected"  # refused: by us (bad number, no credit) or by the operator
    EXPIRED = "expired"  # no final receipt within the validity period

    @property
    def final(self) -> bool:
        return self in FINAL

    @property
    def reached_operator(self) -> bool:
        """Whether the operator took the message, which is what we pay for."""
        return self in (State.SUBMITTED, State.DELIVERED, State.UNDELIVERED, State.EXPIRED)


FINAL = frozenset({State.DELIVERED, State.UNDELIVERED, State.FAILED, State.REJECTED, State.EXPIRED})

# Non-final states only ever move forward; receipts arrive late, twice and out of order.
_RANK = {State.ACCEPTED: 0, State.QUEUED: 1, State.SUBMITTED: 2}

# When parts of one message end differently, the worst outcome is the message's.
# A later part's success must never hide an earlier part's failure.
_SEVERITY = {
    State.DELIVERED: 0,
    State.EXPIRED: 1,
    State.UNDELIVERED: 2,
    State.REJECTED: 3,
    State.FAILED: 4,
}


def may_follow(current: State, new: State) -> bool:
    """True when ``new`` may replace ``current`` in a message's life."""
    if current.final:
        return False
    if new.final:
        return True
    return _RANK[new] > _RANK[current]


def fold_parts(parts: list[State | None]) -> State | None:
    """The state of a message made of parts, or None while it is unchanged.

    A message is final only once every part is final; then it takes the worst
    part's outcome. Until then it is SUBMITTED if any part is.
    """
    known = [p for p in parts if p is not None]
    if not known:
        return None
    if len(known) == len(parts) and all(p.final for p in known):
        return max(known, key=_SEVERITY.__getitem__)
    if any(p == State.SUBMITTED or p.final for p in known):
        return State.SUBMITTED
    return max(known, key=lambda p: _RANK.get(p, 0))


# SMPP 3.4 receipts: the ``stat:`` word of the text, and the message_state TLV.
SMPP_STAT = {
    "DELIVRD": State.DELIVERED,
    "EXPIRED": State.EXPIRED,
    "DELETED": State.UNDELIVERED,
    "UNDELIV": State.UNDELIVERED,
    "ACCEPTD": State.SUBMITTED,
    "ENROUTE": State.SUBMITTED,
    "UNKNOWN": State.UNDELIVERED,
    "REJECTD": State.REJECTED,
}
SMPP_MESSAGE_STATE = {
    1: State.SUBMITTED,  # ENROUTE
    2: State.DELIVERED,
    3: State.EXPIRED,
    4: State.UNDELIVERED,  # DELETED
    5: State.UNDELIVERED,
    6: State.SUBMITTED,  # ACCEPTED
    7: State.UNDELIVERED,  # UNKNOWN
    8: State.REJECTED,
}
STATE_TO_SMPP_STAT = {
    State.DELIVERED: ("DELIVRD", 2),
    State.EXPIRED: ("EXPIRED", 3),
    State.UNDELIVERED: ("UNDELIV", 5),
    State.FAILED: ("UNDELIV", 5),
    State.REJECTED: ("REJECTD", 8),
    State.SUBMITTED: ("ENROUTE", 1),
    State.QUEUED: ("ENROUTE", 1),
    # not ACCEPTD (6): in SMPP that means "read by customer care", not "scheduled"
    State.ACCEPTED: ("ENROUTE", 1),
}


# --- Each dialect's codes, in one table so no dialect invents its own mapping ---

# Tingg Engage callback statuses: 100 pending, 102/105 preprocessing errors,
# 103 forwarded to operator, 104 delivered, 129 failed at the operator.
TINGG_STATUS = {
    State.ACCEPTED: (100, "Pending processing"),
    State.QUEUED: (100, "Pending processing"),
    State.SUBMITTED: (103, "Forwarded to operator"),
    State.DELIVERED: (104, "Delivered successfully"),
    State.UNDELIVERED: (129, "Delivery failed on the operator side"),
    State.EXPIRED: (129, "Delivery failed on the operator side: expired"),
    State.REJECTED: (102, "Error during preprocessing of message"),
    State.FAILED: (105, "Error during preprocessing of message"),
}



def tingg_status(state: State, *, reached_operator: bool) -> tuple[int, str]:
    """Refused by the operator after it took the message is a failure on the
    operator side (129), not a preprocessing error (102)."""
    if state == State.REJECTED and reached_operator:
        return TINGG_STATUS[State.UNDELIVERED]
    return TINGG_STATUS[state]


# Tilil delivery codes (1-26). Detailed operator reasons pick a finer code
# where the channel reported one (see ``tilil_delivery_code``).
TILIL_DELIVERY = {
    State.ACCEPTED: (22, "Queued"),
    State.QUEUED: (22, "Queued"),
    State.SUBMITTED: (19, "ForwardedToNetwork"),
    State.DELIVERED: (1, "DeliveredToTerminal"),
    State.UNDELIVERED: (3, "DeliveryImpossible"),
    State.EXPIRED: (16, "AbsentSubscriber"),
    State.REJECTED: (21, "MessageRejected"),
    State.FAILED: (17, "NOT_DELIVERED"),
}
_TILIL_BY_REASON = {
    "absent_subscriber": (16, "AbsentSubscriber"),
    "blacklisted": (10, "UserInBlacklist"),
    "unknown_subscriber": (15, "UserNotExist"),
    "not_subscribed": (14, "UserNotSubscribed"),
    "invalid_number": (23, "InvalidMobile"),
    "insufficient_balance": (7, "Insufficient_Balance"),
    "invalid_link_id": (8, "Invalid_Linkid"),
    "suspended": (12, "UserIsSuspended"),
}


def tilil_delivery_code(state: State, reason: str | None = None) -> tuple[int, str]:
    if reason and state.final and state != State.DELIVERED and reason in _TILIL_BY_REASON:
        return _TILIL_BY_REASON[reason]
    return TILIL_DELIVERY[state]


# Messangi message statuses, by their own words (docs/messangi.md): a send is
# "sent to carrier" from the moment it is queued, as Messangi's send answer says.
MESSANGI_STATUS = {
    State.ACCEPTED: ("SCHEDULED", "Scheduled"),
    State.QUEUED: ("SENT_TO_CARRIER", "Sent to Carrier"),
    State.SUBMITTED: ("SENT_TO_CARRIER", "Sent to Carrier"),
    State.DELIVERED: ("DELIVERED", "Delivered to the handset"),
    State.UNDELIVERED: ("UNDELIVERED", "Not delivered to the handset"),
    State.EXPIRED: ("EXPIRED", "Expired before delivery"),
    State.FAILED: ("FAILED", "Failed"),
    State.REJECTED: ("REJECTED", "Rejected"),
}
