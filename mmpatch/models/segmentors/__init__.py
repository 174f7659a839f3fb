from .host_log_encoder_decoder import (HostLogEncoderDecoder, copy_log_vars,  # noqa: F401
                                       host_log_vars, train_step_host_log)
