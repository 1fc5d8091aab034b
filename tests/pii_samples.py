"""PII values and lookalikes shared by the end-to-end masking tests."""

import json
from typing import Any

PII = {
    "EMAIL": "jane.doe@example.com",
    "PHONE": "+1 415 555 0132",
    "CREDIT_CARD": "4111 1111 1111 1111",
    "US_SSN": "123-45-6789",
    "IBAN": "DE89 3704 0044 0532 0130 00",
    "IP_ADDRESS": "203.0.113.42",
    "SECRET": "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCD",
}
LOOKALIKES = [
    "order 1234567",
    "550e8400-e29b-41d4-a716-446655440000",
    "v2.10.0-rc1",
    "2025-08-20T10:05:00.250Z",
    "$1,234.56",
    "1200 tokens",
    "4111 1111 1111 1112",  # 16 digits failing Luhn
]
PROMPT = (
    "Hi, I'm Jane, email jane.doe@example.com, phone +1 415 555 0132, card 4111 1111 1111 1111. "
    "About order 1234567 (ticket 550e8400-e29b-41d4-a716-446655440000) on v2.10.0-rc1 at "
    "2025-08-20T10:05:00.250Z, I paid $1,234.56 and used 1200 tokens; not card 4111 1111 1111 1112."
)
RESPONSE = "I have noted SSN 123-45-6789 and IBAN DE89 3704 0044 0532 0130 00 from 203.0.113.42."


def chat_attributes_with_pii(**extra: Any) -> dict[str, Any]:
    """A GenAI chat span's attributes whose prompt and response carry PII and lookalikes."""
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 120,
        "gen_ai.usage.output_tokens": 30,
        "gen_ai.input.messages": json.dumps(
            [{"role": "user", "parts": [{"type": "text", "content": PROMPT}]}]
        ),
        "gen_ai.output.messages": json.dumps(
            [{"role": "assistant", "parts": [{"type": "text", "content": RESPONSE}], "finish_reason": "stop"}]
        ),
        **extra,
    }
