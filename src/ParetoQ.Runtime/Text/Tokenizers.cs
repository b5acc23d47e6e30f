using ParetoQ.Runtime.Format;

namespace ParetoQ.Runtime.Text;

/// <summary>Builds the tokenizer embedded in a .pq file; a model's tokenizer is always the one inside its
/// file.</summary>
public static class Tokenizers
{
    public static ITokenizer FromFile(PqFile file, int vocabSize)
        => Create(file.Tokenizer, file.TokenizerBytes, vocabSize, file.Path);

    /// <summary>The tokenizer that <paramref name="info"/> and <paramref name="bytes"/> describe, checked against the
    /// model's vocabulary.</summary>
    public static ITokenizer Create(PqTokenizerInfo info, ReadOnlySpan<byte> bytes, int vocabSize, string source)
    {
        // Ids first: a tokenizer sizes its tables by the largest id, so a hostile one must not reach it.
        foreach (int id in info.EosIds.Append(info.BosId).Append(info.PadId).Concat(info.SpecialTokens.Values))
            if (id >= vocabSize) throw new TokenizerException(source,
                $"special id {id} is outside the model's vocabulary ({vocabSize})");
        ITokenizer tokenizer = info.Kind switch
        {
            TokenizerKinds.HuggingFaceJson => SentencePieceBpeTokenizer.FromHuggingFaceJson(bytes, source),
            TokenizerKinds.SentencePiece => SentencePieceBpeTokenizer.FromSentencePieceModel(bytes, source),
            TokenizerKinds.Tiktoken
                => new TiktokenTextTokenizer(bytes, info.SpecialTokens, info.BosId, vocabSize, source),
            _ => throw new TokenizerException(source, $"tokenizer kind '{info.Kind}' is not supported"),
        };
        if (tokenizer.VocabSize > vocabSize)
            throw new TokenizerException(source,
                $"the tokenizer has {tokenizer.VocabSize} ids but the model's vocabulary is {vocabSize}");
        return tokenizer;
    }

    /// <summary>
    /// A LLaMA-style tokenizer.json (SentencePiece BPE with byte fallback) ready to embed in a .pq written by our own
    /// tools: BOS is &lt;s&gt;, EOS &lt;/s&gt;, no chat template. The tokenizer itself comes along, so callers parse it
    /// once.
    /// </summary>
    public static (PqTokenizerInfo Info, byte[] Bytes,
        SentencePieceBpeTokenizer Tokenizer) LlamaTokenizerJson(string path)
    {
        byte[] bytes = InputFile.ReadAll(path, SentencePieceBpeTokenizer.MaxJsonBytes,
            problem => new TokenizerException(path, problem));
        var tokenizer = SentencePieceBpeTokenizer.FromHuggingFaceJson(bytes, path);
        int eos = Array.FindIndex(tokenizer.Pieces(), p => p.Piece == "</s>");
        if (tokenizer.BosId < 0 || eos < 0) throw new TokenizerException(path, "has no <s> and </s> pieces");
        return (new PqTokenizerInfo(TokenizerKinds.HuggingFaceJson, tokenizer.BosId, [eos], PqTokenizerInfo.None,
            new Dictionary<string, int>(), null), bytes, tokenizer);
    }
}
