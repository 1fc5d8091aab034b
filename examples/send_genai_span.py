"""Send one GenAI chat span to inferline with the plain OpenTelemetry SDK.

Configured only by the standard variables, as any instrumented service would be:
    OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318
    OTEL_EXPORTER_OTLP_HEADERS="x-api-key=<your key>"
"""

import json
import random
import time

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

provider = TracerProvider(resource=Resource.create({"service.name": "tour-bot"}))
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
trace.set_tracer_provider(provider)
tracer = trace.get_tracer("tour")

for model, latency in (("gpt-4o-mini", 0.4), ("claude-sonnet-4-5", 0.9)):
    with tracer.start_as_current_span(f"chat {model}", kind=trace.SpanKind.CLIENT) as span:
        span.set_attributes(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai" if model.startswith("gpt") else "anthropic",
                "gen_ai.request.model": model,
                "gen_ai.usage.input_tokens": 1200,
                "gen_ai.usage.cache_read.input_tokens": 1024,
                "gen_ai.usage.output_tokens": 85,
                "gen_ai.input.messages": json.dumps(
                    [
                        {
                            "role": "user",
                            "parts": [{"type": "text", "content": "What is the capital of France?"}],
                        }
                    ]
                ),
                "gen_ai.output.messages": json.dumps(
                    [
                        {
                            "role": "assistant",
                            "parts": [{"type": "text", "content": "Paris."}],
                            "finish_reason": "stop",
                        }
                    ]
                ),
            }
        )
        time.sleep(latency * random.uniform(0.8, 1.2))

provider.shutdown()  # flushes; the exporter logs an error if the service refused the spans
print("sent 2 spans")
