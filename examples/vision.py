"""Vision / multimodal input (product brief: Vision / Multimodal).

Run ``python examples/vision.py``. Without API keys the example starts the built-in
emulator (``LLM_OFFLINE=1``, see ``_setup.py``). The image is a small PNG built in code.
"""

import asyncio
import base64
import struct
import zlib

from _setup import offline_unless_keys

from llm import ImageContent, LLMService, Message, MessageRole, TextContent


def make_png(width=32, height=16):
    """A real PNG: a blue header bar over a white page, like a tiny UI mockup."""

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = []
    for y in range(height):
        pixel = b"\x25\x63\xeb" if y < 4 else b"\xff\xff\xff"
        rows.append(b"\x00" + pixel * width)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + chunk(b"IEND", b"")
    )


base64_image = base64.b64encode(make_png()).decode("ascii")


async def main():
    offline_unless_keys()
    service = LLMService()
    try:
        response = await service.generate(
            model="gemini-3.8-flash",  # Gemini has best vision
            messages=[
                Message(
                    role=MessageRole.USER,
                    content=[
                        ImageContent(data=base64_image, media_type="image/png"),
                        TextContent(text="What design patterns do you see in this UI?"),
                    ],
                )
            ],
        )
        print(response.text)
        print(f"Input tokens (image included): {response.usage.input_tokens}")
    finally:
        await service.aclose()


if __name__ == "__main__":
    asyncio.run(main())
