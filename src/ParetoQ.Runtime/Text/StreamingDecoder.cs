using System.Buffers;
using System.Text.Unicode;

namespace ParetoQ.Runtime.Text;

/// <summary>
/// Turns a stream of token ids into text without ever emitting half a character: bytes of a UTF-8 sequence that spans
/// tokens are held back until the sequence is complete. Invalid bytes become U+FFFD. Allocation-free per token.
/// </summary>
public sealed class StreamingDecoder(ITokenizer tokenizer)
{
    private readonly byte[] _pending = new byte[ITokenizer.MaxTokenBytes + 4]; // at most 3 held-back bytes + one token
    private int _count;

    /// <summary>Adds one token and writes the text it completes to <paramref name="destination"/> (at least
    /// <see cref="ITokenizer.MaxTokenBytes"/> + 4 chars); returns the chars written.</summary>
    public int Push(int id, Span<char> destination)
    {
        _count += tokenizer.TokenBytes(id, _pending.AsSpan(_count));
        return Drain(destination, final: false);
    }

    /// <summary>Ends the stream: bytes of an unfinished character come out as U+FFFD.</summary>
    public int Flush(Span<char> destination) => Drain(destination, final: true);

    public string Push(int id)
    {
        Span<char> chars = stackalloc char[ITokenizer.MaxTokenBytes + 4];
        return new string(chars[..Push(id, chars)]);
    }

    public string Flush()
    {
        Span<char> chars = stackalloc char[8];
        return new string(chars[..Flush(chars)]);
    }

    private int Drain(Span<char> destination, bool final)
    {
        var status = Utf8.ToUtf16(_pending.AsSpan(0, _count), destination, out int read, out int written,
            replaceInvalidSequences: true, isFinalBlock: final);
        if (status == OperationStatus.DestinationTooSmall) throw new ArgumentException("destination is too small",
            nameof(destination));
        _pending.AsSpan(read, _count - read).CopyTo(_pending);
        _count -= read;
        return written;
    }
}
