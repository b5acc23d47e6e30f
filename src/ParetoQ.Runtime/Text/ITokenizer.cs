namespace ParetoQ.Runtime.Text;

/// <summary>Text ↔ token ids for one model.</summary>
public interface ITokenizer
{
    /// <summary>Ids are 0..VocabSize−1.</summary>
    int VocabSize { get; }
    int BosId { get; }

    /// <summary>Encodes plain text; special-token strings in the text are treated as text, never as control
    /// tokens.</summary>
    int[] Encode(string text, bool addBos);

    /// <summary>No token contributes more UTF-8 bytes than this; tokenizers refuse vocabularies that would.</summary>
    const int MaxTokenBytes = 256;

    /// <summary>The UTF-8 bytes one token contributes to the output (none for control tokens); returns the count
    /// written to <paramref name="destination"/> (at least <see cref="MaxTokenBytes"/> long).</summary>
    int TokenBytes(int id, Span<byte> destination);

    /// <summary>Decodes a whole sequence as the reference tokenizer does (control tokens dropped, invalid UTF-8 as
    /// U+FFFD).</summary>
    string Decode(ReadOnlySpan<int> ids);

    /// <summary>The concatenated <see cref="TokenBytes"/> of <paramref name="ids"/> as text (invalid UTF-8 as
    /// U+FFFD).</summary>
    static string ConcatenatedText(ITokenizer tokenizer, ReadOnlySpan<int> ids)
    {
        var bytes = new List<byte>(ids.Length * 4);
        Span<byte> buffer = stackalloc byte[MaxTokenBytes];
        foreach (int id in ids) bytes.AddRange(buffer[..tokenizer.TokenBytes(id, buffer)]);
        return System.Text.Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes));
    }
}
