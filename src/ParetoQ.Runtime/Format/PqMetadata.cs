namespace ParetoQ.Runtime.Format;

/// <summary>How the embedded tokenizer bytes are to be read.</summary>
public static class TokenizerKinds
{
    /// <summary>SentencePiece <c>tokenizer.model</c> (protobuf).</summary>
    public const string SentencePiece = "sentencepiece";
    /// <summary>Hugging Face <c>tokenizer.json</c>.</summary>
    public const string HuggingFaceJson = "hf-json";
    /// <summary>tiktoken ranks file: one "base64token rank" per line.</summary>
    public const string Tiktoken = "tiktoken";

    public static bool IsKnown(string kind) => kind is SentencePiece or HuggingFaceJson or Tiktoken;
}

/// <summary>The embedded tokenizer's description; its bytes are <see cref="PqFile.TokenizerBytes"/>.</summary>
public sealed record PqTokenizerInfo(
    string Kind,
    int BosId,
    IReadOnlyList<int> EosIds,
    int PadId,
    IReadOnlyDictionary<string, int> SpecialTokens,
    string? ChatTemplate)
{
    /// <summary>Id meaning "none" for <see cref="BosId"/> and <see cref="PadId"/>.</summary>
    public const int None = -1;
}

/// <summary>Where a model came from and how it was made.</summary>
public sealed record PqProvenance(string Source, string Bits, string Tool, IReadOnlyDictionary<string,
    string> Settings);
