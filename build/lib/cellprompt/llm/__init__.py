"""Chat models: one small protocol (`base.py`) and its providers; `make_model` builds them."""

from cellprompt.llm.base import ChatModel, ChatReply, Message, ToolCall, ToolSpec, Usage
from cellprompt.llm.factory import make_model

__all__ = ["ChatModel", "ChatReply", "Message", "ToolCall", "ToolSpec", "Usage", "make_model"]
