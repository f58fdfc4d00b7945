"""The official Anthropic SDK against the mock: non-streaming `messages.create`, the
`messages.stream()` helper and raw `stream=True` events. Prints one JSON object with what the SDK
parsed for each call; the Rust test compares it with the mock's own counts."""

import json
import sys

import anthropic

base_url = sys.argv[1]
client = anthropic.Anthropic(base_url=base_url, api_key="dummy-key", max_retries=0)
MESSAGES = [{"role": "user", "content": "How many requests fit in a minute?"}]
SYSTEM = "You are a careful assistant."
calls = {}


def record(name, text, usage, stop_reason):
    calls[name] = {
        "text": text,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_creation_input_tokens,
        "cache_read_input_tokens": usage.cache_read_input_tokens,
        "stop_reason": stop_reason,
    }


message = client.messages.create(model="claude-mock", max_tokens=100, system=SYSTEM, messages=MESSAGES)
assert message.type == "message" and message.role == "assistant", message
assert message.id.startswith("msg_"), message.id
record("create", message.content[0].text, message.usage, message.stop_reason)

capped = client.messages.create(model="claude-mock", max_tokens=5, messages=MESSAGES)
record("create_capped", capped.content[0].text, capped.usage, capped.stop_reason)

with client.messages.stream(model="claude-mock", max_tokens=100, system=SYSTEM, messages=MESSAGES) as stream:
    streamed_text = "".join(stream.text_stream)
    final = stream.get_final_message()
assert final.content[0].text == streamed_text, (final, streamed_text)
record("stream_helper", streamed_text, final.usage, final.stop_reason)

# Raw events: the SDK's typed events, in the order the API documents.
events = client.messages.create(model="claude-mock", max_tokens=100, messages=MESSAGES, stream=True)
names, text, usage, stop_reason = [], "", None, None
for event in events:
    names.append(event.type)
    if event.type == "message_start":
        usage = event.message.usage
    elif event.type == "content_block_delta":
        text += event.delta.text
    elif event.type == "message_delta":
        usage.output_tokens = event.usage.output_tokens
        stop_reason = event.delta.stop_reason
expected = ["message_start", "content_block_start"] + ["content_block_delta"] * len(text.split(" ")) + [
    "content_block_stop", "message_delta", "message_stop"]
assert names == expected, names
record("stream_raw", text, usage, stop_reason)

print(json.dumps({"sdk": "anthropic", "version": anthropic.__version__, "calls": calls}))
