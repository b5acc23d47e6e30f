using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Generation;
using ParetoQ.Runtime.Text;

namespace ParetoQ.Trainer;

/// <summary>
/// Training text as token files: every document (one line of the input files) is encoded with BOS first and appended;
/// every <c>validationEvery</c>-th document goes to the validation file instead, so the split is deterministic and
/// spread over the whole corpus.
/// <para>
/// File layout: "PQTOKENS" (8 bytes), u32 version 1, u32 vocabulary size, u32 bytes per token (2 or 4), u32 0,
/// u64 token count, the tokens (little-endian, unsigned), then the XXH3-64 of everything before it.
/// </para>
/// </summary>
public static class TokenData
{
    private static ReadOnlySpan<byte> Magic => "PQTOKENS"u8;
    private const int HeaderBytes = 32;

    public sealed record BuildReport(long Documents, long TrainTokens, long ValidationTokens);

    /// <param name="validationText">Receives the validation documents as text, one per line (held-out text for
    /// <c>paretoq-run --perplexity</c> on exported models).</param>
    public static BuildReport Build(IEnumerable<string> documents, ITokenizer tokenizer, int vocabSize,
        string trainPath, string validationPath, int validationEvery = 20, bool overwrite = false,
            string? validationText = null)
    {
        if (validationEvery < 2) throw new ArgumentException($"validation-every {validationEvery} must be at least 2");
        var train = new List<int>();
        var validation = new List<int>();
        var heldOut = new StringBuilder();
        long count = 0;
        foreach (string document in documents)
        {
            if (document.Trim().Length == 0) continue;
            bool isValidation = ++count % validationEvery == 0;
            (isValidation ? validation : train).AddRange(tokenizer.Encode(document, addBos: true));
            if (isValidation) heldOut.Append(document).Append('\n');
        }
        if (train.Count == 0
            || validation.Count == 0) throw new ArgumentException($"{count} documents are too few for a training and a validation split (1 in {validationEvery})");
        Write(trainPath, train, vocabSize, overwrite);
        Write(validationPath, validation, vocabSize, overwrite);
        if (validationText is not null)
            AtomicFile.Write(validationText, overwrite, fs
                => fs.Write(new UTF8Encoding(false).GetBytes(heldOut.ToString())));
        return new BuildReport(count, train.Count, validation.Count);
    }

    public static void Write(string path, IReadOnlyList<int> tokens, int vocabSize, bool overwrite = false)
    {
        int width = vocabSize <= 1 << 16 ? 2 : 4;
        var bytes = new byte[HeaderBytes + (long)tokens.Count * width + 8];
        Magic.CopyTo(bytes);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(8), 1);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(12), (uint)vocabSize);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(16), (uint)width);
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(24), (ulong)tokens.Count);
        for (int i = 0; i < tokens.Count; i++)
        {
            if ((uint)tokens[i] >= (uint)vocabSize)
                throw new ArgumentException($"token {i} is {tokens[i]}, outside the vocabulary of {vocabSize}");
            var at = bytes.AsSpan(HeaderBytes + i * width);
            if (width == 2) BinaryPrimitives.WriteUInt16LittleEndian(at, (ushort)tokens[i]);
            else BinaryPrimitives.WriteInt32LittleEndian(at, tokens[i]);
        }
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(bytes.Length - 8),
            XxHash3.HashToUInt64(bytes.AsSpan(0, bytes.Length - 8)));
        AtomicFile.Write(path, overwrite, fs => fs.Write(bytes));
    }

    /// <summary>Reads a token file, checking its header, size and checksum, and that it matches the model's
    /// vocabulary.</summary>
    public static int[] Read(string path, int vocabSize)
    {
        byte[] bytes = InputFile.ReadAll(path, Array.MaxLength,
            problem => new InvalidDataException($"{path}: {problem}"));
        string Bad(string problem) => $"{path}: not a valid token file: {problem}";
        if (bytes.Length < HeaderBytes + 8
            || !bytes.AsSpan(0, 8).SequenceEqual(Magic)) throw new InvalidDataException(Bad("no PQTOKENS header"));
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(8));
        uint vocab = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(12));
        uint width = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(16));
        ulong count = BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(24));
        if (version != 1) throw new InvalidDataException(Bad($"version {version}"));
        if (width is not (2 or 4)) throw new InvalidDataException(Bad($"{width} bytes per token"));
        if (count != (ulong)(bytes.Length - HeaderBytes - 8) / width
            || (ulong)(bytes.Length - HeaderBytes - 8) % width != 0)
            throw new InvalidDataException(Bad($"{count} tokens declared, {bytes.Length} bytes present (truncated?)"));
        if (XxHash3.HashToUInt64(bytes.AsSpan(0,
            bytes.Length - 8)) != BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(bytes.Length - 8)))
            throw new InvalidDataException(Bad("checksum mismatch (corrupted)"));
        if (vocab != vocabSize)
            throw new InvalidDataException($"{path} was tokenized for a vocabulary of {vocab}; the model's is {vocabSize}");
        var tokens = new int[count];
        for (long i = 0; i < tokens.LongLength; i++)
        {
            var at = bytes.AsSpan(HeaderBytes + (int)(i * width));
            tokens[i] = width == 2 ? BinaryPrimitives.ReadUInt16LittleEndian(at)
                : BinaryPrimitives.ReadInt32LittleEndian(at);
            if ((uint)tokens[i] >= vocab)
                throw new InvalidDataException(Bad($"token {i} is {tokens[i]}, outside the vocabulary"));
        }
        return tokens;
    }
}

/// <summary>
/// Training windows drawn uniformly from a token array with a seeded PCG32 stream; <see cref="State"/> is saved in
/// checkpoints so a resumed run draws the same windows.
/// </summary>
public sealed class WindowSampler(int[] tokens, int length, ulong state)
{
    private Pcg32 _random = new(state);

    public ulong State => _random.State;

    /// <summary>The start of the next window of <c>length + 1</c> tokens (inputs and their next-token
    /// targets).</summary>
    public int Next()
    {
        int range = tokens.Length - length;
        if (range < 1) throw new InvalidOperationException($"{tokens.Length} tokens hold no window of {length + 1}");
        return _random.NextInt(range);
    }
}
