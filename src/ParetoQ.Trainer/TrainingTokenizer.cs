using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Interchange;
using ParetoQ.Runtime.Text;

namespace ParetoQ.Trainer;

/// <summary>
/// The tokenizer of a training run: a LLaMA-style tokenizer.json, or the one a model file carries (a .pq, such as
/// stories260K converted from its GGUF or llama2.c checkpoint), so a model is trained on text tokenized its own way.
/// `data` keeps it beside the token files (tokenizer.json, or tokenizer.pq: a .pq holding only the source's config and
/// tokenizer) and `export` embeds it.
/// </summary>
public sealed record TrainingTokenizer(PqTokenizerInfo Info, byte[] Bytes, ITokenizer Tokenizer, byte[]? ModelConfig)
{
    public const string JsonFile = "tokenizer.json";
    public const string ModelFile = "tokenizer.pq";

    public static TrainingTokenizer Load(string path)
    {
        if (SourceCheckpoint.KindOf(path, problem => new TokenizerException(path, problem)) != SourceKind.Pq)
        {
            var (info, bytes, tokenizer) = Tokenizers.LlamaTokenizerJson(path);
            return new TrainingTokenizer(info, bytes, tokenizer, null);
        }
        using var file = PqFile.Open(path);
        int vocab = Runtime.Model.ModelConfig.Parse(file.Config, path).VocabSize;
        return new TrainingTokenizer(file.Tokenizer, file.TokenizerBytes.ToArray(), Tokenizers.FromFile(file, vocab),
            System.Text.Encoding.UTF8.GetBytes(file.Config.GetRawText()));
    }

    /// <summary>The tokenizer `data` kept in <paramref name="directory"/>.</summary>
    public static TrainingTokenizer FromData(string directory)
    {
        string pq = Path.Combine(directory, ModelFile);
        return Load(File.Exists(pq) ? pq : Path.Combine(directory, JsonFile));
    }

    public void Save(string directory)
    {
        if (ModelConfig is null)
        {
            AtomicFile.Write(Path.Combine(directory, JsonFile), overwrite: true, fs => fs.Write(Bytes));
            File.Delete(Path.Combine(directory, ModelFile));
            return;
        }
        var writer = new PqWriter(ModelConfig, new PqProvenance("tokenizer of the training data", "", "paretoq-train data",
            new Dictionary<string, string>()));
        writer.SetTokenizer(Info, Bytes);
        writer.Write(Path.Combine(directory, ModelFile), overwrite: true);
        File.Delete(Path.Combine(directory, JsonFile));
    }
}
