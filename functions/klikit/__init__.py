"""klikit webhook domain shared by the receiver and the processor.

Everything here is plain Python (no boto3, no pydantic) so the receiver can import it on its cold-start path.
"""
