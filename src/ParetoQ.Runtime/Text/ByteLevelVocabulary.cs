using System.Text;
using ParetoQ.Runtime.Format;

namespace ParetoQ.Runtime.Text;

/// <summary>
/// The smallest real vocabulary: a tiktoken file whose rank i is the single byte i, plus Llama-4's text markers.
/// Generated models (tests, benchmarks, the random default model) carry it, so they run through the normal tokenizer
/// path.
/// </summary>
public static class ByteLevelVocabulary
{
    /// <summary>Tokens: 256 bytes, then begin/end of text, then (with chat tokens) header start/end and end of
    /// turn.</summary>
    public static int Size(bool chatTokens) => chatTokens ? 261 : 258;

    /// <summary>The tiktoken ranks file: "base64(byte) rank" per line.</summary>
    public static byte[] Ranks()
    {
        var sb = new StringBuilder();
        for (int b = 0; b < 256; b++) sb.Append(Convert.ToBase64String([(byte)b])).Append(' ').Append(b).Append('\n');
        return Encoding.ASCII.GetBytes(sb.ToString());
    }

    /// <summary>Metadata for the vocabulary; with chat tokens it uses the Llama-4 chat template.</summary>
    public static PqTokenizerInfo Info(bool chatTokens)
    {
        var specials = new Dictionary<string, int> { ["<|begin_of_text|>"] = 256, ["<|end_of_text|>"] = 257 };
        if (chatTokens)
        {
            specials["<|header_start|>"] = 258;
            specials["<|header_end|>"] = 259;
            specials["<|eot|>"] = 260;
        }
        return new PqTokenizerInfo(TokenizerKinds.Tiktoken, BosId: 256, EosIds: chatTokens ? [257, 260] : [257],
            PadId: PqTokenizerInfo.None, SpecialTokens: specials, ChatTemplate: chatTokens ? "llama4" : null);
    }
}
