"""The dispatch webhook receiver (``vpp receiver``): Leap notifications -> the ops store's inbox."""

from vpp_pipeline.receiver.app import (
    DEFAULT_HEADER_NAME,
    DEFAULT_WEBHOOK_API_KEY,
    MAX_BODY_BYTES,
    ReceiverConfigError,
    ReceiverSettings,
    create_receiver_app,
    webhook_api_key,
)
from vpp_pipeline.receiver.server import DEFAULT_RECEIVER_PORT, ReceiverServer, serve_forever

__all__ = [
    "DEFAULT_HEADER_NAME",
    "DEFAULT_RECEIVER_PORT",
    "DEFAULT_WEBHOOK_API_KEY",
    "MAX_BODY_BYTES",
    "ReceiverConfigError",
    "ReceiverServer",
    "ReceiverSettings",
    "create_receiver_app",
    "serve_forever",
    "webhook_api_key",
]
