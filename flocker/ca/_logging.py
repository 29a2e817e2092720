"""The eliot fields and messages that flocker.ca's TLS helpers log."""

from eliot import Field, MessageType

KIND = Field.for_types("kind", [str], "What the peer is: node, control or user.")
NODE_UUID = Field.for_types("node_uuid", [str, type(None)], "The peer node's UUID.")
USERNAME = Field.for_types("username", [str, type(None)], "The peer user's name.")
CLUSTER_UUID = Field.for_types("cluster_uuid", [str], "The peer's cluster UUID.")
REASON = Field.for_types("reason", [str], "Why the peer was not accepted.")

#: A TLS peer's identity was read from its verified certificate.
PEER_IDENTIFIED = MessageType(
    "flocker:ca:peer_identified",
    [KIND, NODE_UUID, USERNAME, CLUSTER_UUID],
    "The peer of a TLS connection was identified from its certificate.",
)

#: A TLS peer's certificate was refused by Flocker's own checks.
PEER_REJECTED = MessageType(
    "flocker:ca:peer_rejected",
    [REASON],
    "A TLS peer's certificate was signed by the cluster CA but is not the "
    "party this connection expected.",
)
