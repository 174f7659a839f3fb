from .host_log_encoder_decoder import HostLogEncoderDecoder, host_log_vars  # noqa: F401
