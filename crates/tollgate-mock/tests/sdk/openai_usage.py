"""The official OpenAI SDK against the mock: Chat Completions (non-streaming, and streaming with
`stream_options={"include_usage": True}`) and Responses (non-streaming, `stream=True` and the
`responses.stream()` helper). Prints one JSON object with what the SDK parsed for each call; the
Rust test compares it with the mock's own counts."""

import json
import sys

import openai

base_url = sys.argv[1] + "/v1"
client = openai.OpenAI(base_url=base_url, api_key="dummy-key", max_retries=0)
MESSAGES = [
    {"role": "system", "content": "You are a careful assistant."},
    {"role": "user", "content": "How many requests fit in a minute?"},
]
calls = {}


def record(name, text, input_tokens, output_tokens, total_tokens, finish):
    assert total_tokens == input_tokens + output_tokens, (name, input_tokens, output_tokens, total_tokens)
    calls[name] = {"text": text, "input_tokens": input_tokens, "output_tokens": output_tokens, "stop_reason": finish}


# Chat Completions
completion = client.chat.completions.create(model="gpt-mock", messages=MESSAGES, max_completion_tokens=100)
assert completion.object == "chat.completion" and completion.id.startswith("chatcmpl-"), completion
u = completion.usage
record("chat_create", completion.choices[0].message.content, u.prompt_tokens, u.completion_tokens, u.total_tokens,
       completion.choices[0].finish_reason)

capped = client.chat.completions.create(model="gpt-mock", messages=MESSAGES, max_tokens=5)
u = capped.usage
record("chat_create_capped", capped.choices[0].message.content, u.prompt_tokens, u.completion_tokens, u.total_tokens,
       capped.choices[0].finish_reason)

chunks = list(client.chat.completions.create(
    model="gpt-mock", messages=MESSAGES, max_completion_tokens=100, stream=True,
    stream_options={"include_usage": True}))
assert all(c.object == "chat.completion.chunk" for c in chunks)
assert chunks[-1].choices == [] and chunks[-1].usage is not None, chunks[-1]
assert all(c.usage is None for c in chunks[:-1])
text = "".join(c.choices[0].delta.content or "" for c in chunks[:-1])
finish = [c.choices[0].finish_reason for c in chunks[:-1] if c.choices[0].finish_reason]
u = chunks[-1].usage
record("chat_stream", text, u.prompt_tokens, u.completion_tokens, u.total_tokens, finish[0])

without_usage = list(client.chat.completions.create(model="gpt-mock", messages=MESSAGES, stream=True))
assert all(c.usage is None and len(c.choices) == 1 for c in without_usage)

# Responses
response = client.responses.create(model="gpt-mock", input="How many requests fit in a minute?",
                                   instructions="You are a careful assistant.", max_output_tokens=100)
assert response.object == "response" and response.status == "completed", response
u = response.usage
record("responses_create", response.output_text, u.input_tokens, u.output_tokens, u.total_tokens, response.status)

events = list(client.responses.create(model="gpt-mock", input="How many requests fit in a minute?",
                                      instructions="You are a careful assistant.", max_output_tokens=100,
                                      stream=True))
assert events[0].type == "response.created" and events[-1].type == "response.completed", events
assert [e.sequence_number for e in events] == list(range(len(events)))
text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
u = events[-1].response.usage
record("responses_stream", text, u.input_tokens, u.output_tokens, u.total_tokens, events[-1].response.status)

with client.responses.stream(model="gpt-mock", input="How many requests fit in a minute?",
                             instructions="You are a careful assistant.", max_output_tokens=100) as stream:
    for _ in stream:
        pass
    final = stream.get_final_response()
u = final.usage
record("responses_stream_helper", final.output_text, u.input_tokens, u.output_tokens, u.total_tokens, final.status)

print(json.dumps({"sdk": "openai", "version": openai.__version__, "calls": calls}))
