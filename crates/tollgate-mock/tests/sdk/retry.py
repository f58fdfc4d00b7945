"""A 429 from the mock through an official SDK: with `max_retries=0` the SDK raises
`RateLimitError`; with `max_retries=2` it waits what the mock said and the retry is admitted.

Usage: retry.py anthropic|openai BASE_URL. Drains the mock's request bucket with `max_retries=0`
until the first `RateLimitError`, then makes one call with `max_retries=2`. Prints one JSON
object; the Rust test checks the mock's stats (exactly one more 429, then the retry admitted)."""

import json
import sys
import time

sdk, base_url = sys.argv[1], sys.argv[2]
if sdk == "anthropic":
    import anthropic as lib

    def make(retries):
        return lib.Anthropic(base_url=base_url, api_key="dummy-key", max_retries=retries)

    def call(client):
        return client.messages.create(model="claude-mock", max_tokens=20,
                                      messages=[{"role": "user", "content": "ping"}])
else:
    import openai as lib

    def make(retries):
        return lib.OpenAI(base_url=base_url + "/v1", api_key="dummy-key", max_retries=retries)

    def call(client):
        return client.chat.completions.create(model="gpt-mock", max_completion_tokens=20,
                                              messages=[{"role": "user", "content": "ping"}])

no_retries = make(0)
admitted = 0
while True:
    try:
        call(no_retries)
        admitted += 1
    except lib.RateLimitError as e:
        retry_after = int(e.response.headers["retry-after"])
        break
    if admitted > 1000:
        sys.exit("the mock never answered 429")

start = time.monotonic()
answer = call(make(2))
elapsed = time.monotonic() - start
print(json.dumps({"sdk": sdk, "version": lib.__version__, "admitted_before_429": admitted,
                  "retry_after": retry_after, "elapsed_s": elapsed}))
