"""A fleet of agents on the official SDKs, all through one gateway, with max_retries=0.

Usage: fleet.py BASE_URL CLIENTS CALLS_PER_CLIENT CALLS_PER_SECOND [API_KEY]

Even clients use anthropic, odd ones openai; calls alternate streaming and not. Call j (in
round-robin order over the clients) is offered at j / CALLS_PER_SECOND seconds, or when its
client's previous call ended if that is later. Prints one JSON object: every call's status.
"""
import json
import sys
import threading
import time

import anthropic
import openai

base, clients, per_client, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
key = sys.argv[5] if len(sys.argv) > 5 else "sk-fleet-test-key"
# Digits and spaces: every estimate of the gateway is above the mock's count (4 + bytes / 4).
PROMPT = "0123456789 " * 33
MESSAGES = [{"role": "user", "content": PROMPT}]
statuses = []
lock = threading.Lock()
start = time.monotonic()


def call(kind, client, stream):
    if kind == "anthropic":
        if stream:
            with client.messages.stream(model="claude-sonnet-4-5", max_tokens=16, messages=MESSAGES) as s:
                message = s.get_final_message()
        else:
            message = client.messages.create(model="claude-sonnet-4-5", max_tokens=16, messages=MESSAGES)
        return message.usage.output_tokens
    if stream:
        chunks = client.chat.completions.create(
            model="gpt-4o-mini", max_completion_tokens=16, messages=MESSAGES, stream=True,
            stream_options={"include_usage": True})
        usage = None
        for chunk in chunks:
            usage = chunk.usage or usage
        return usage.completion_tokens
    return client.chat.completions.create(
        model="gpt-4o-mini", max_completion_tokens=16, messages=MESSAGES).usage.completion_tokens


def worker(w):
    kind = "anthropic" if w % 2 == 0 else "openai"
    headers = {"x-agent-id": f"agent-{w}"}
    if kind == "anthropic":
        client = anthropic.Anthropic(base_url=base, api_key=key, max_retries=0, timeout=120,
                                     default_headers=headers)
    else:
        client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=120,
                               default_headers=headers)
    for i in range(per_client):
        due = start + (i * clients + w) / rate
        time.sleep(max(0.0, due - time.monotonic()))
        try:
            call(kind, client, (w + i) % 2 == 1)
            status = 200
        except (anthropic.APIStatusError, openai.APIStatusError) as e:
            status = e.status_code
        except Exception as e:  # a transport error: recorded, never raised
            status = repr(e)
        with lock:
            statuses.append(status)


threads = [threading.Thread(target=worker, args=(w,)) for w in range(clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({
    "calls": len(statuses),
    "ok": sum(1 for s in statuses if s == 200),
    "rate_limited": sum(1 for s in statuses if s == 429),
    "other": [s for s in statuses if s not in (200, 429)][:5],
    "elapsed_s": round(time.monotonic() - start, 1),
}))
