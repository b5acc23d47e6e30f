using ParetoQ.Runtime.Format;

namespace ParetoQ.Runtime.Text;

/// <summary>Builds the tokenizer embedded in a .pq file; a model's tokenizer is always the one inside its file.</summary>
public static class Tokenizers
{
    public static ITokenizer FromFile(PqFile file, int vocabSize)
    {
        var info = file.Tokenizer;
        string source = file.Path;
        ITokenizer tokenizer = info.Kind switch
        {
            TokenizerKinds.HuggingFaceJson => SentencePieceBpeTokenizer.FromHuggingFaceJson(file.TokenizerBytes, source),
            TokenizerKinds.SentencePiece => SentencePieceBpeTokenizer.FromSentencePieceModel(file.TokenizerBytes, source),
            TokenizerKinds.Tiktoken => new TiktokenTextTokenizer(file.TokenizerBytes, info.SpecialTokens, info.BosId, vocabSize, source),
            _ => throw new TokenizerException(source, $"tokenizer kind '{info.Kind}' is not supported"),
        };
        if (tokenizer.VocabSize > vocabSize)
            throw new TokenizerException(source, $"the tokenizer has {tokenizer.VocabSize} ids but the model's vocabulary is {vocabSize}");
        foreach (int id in info.EosIds.Append(info.BosId))
            if (id >= vocabSize) throw new TokenizerException(source, $"special id {id} is outside the model's vocabulary ({vocabSize})");
        return tokenizer;
    }
}
