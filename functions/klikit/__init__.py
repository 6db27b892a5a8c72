"""klikit webhook domain shared by the receiver and the processor.

Plain Python (no pydantic) so the receiver can import it on its cold-start path; only `klikit.aws`, the one
factory of boto3 clients, imports boto3, and nothing else here imports `klikit.aws`.
"""
