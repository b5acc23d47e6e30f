namespace ParetoQ.Runtime.Text;

/// <summary>Writes a SentencePiece tokenizer.model (ModelProto) with LLaMA's BPE settings, from a list of pieces: how a
/// vocabulary that arrives in another container (llama2.c's tokenizer.bin) is embedded in a .pq.</summary>
public static class SentencePieceModelWriter
{
    // ModelProto { 1: pieces { 1: piece, 2: score, 3: type }, 2: trainer_spec { 3: model_type, 35: byte_fallback },
    //              3: normalizer_spec { 1: name, 3: add_dummy_prefix, 4: remove_extra_whitespaces, 5:
    // escape_whitespaces } }
    public static byte[] Write(IEnumerable<SentencePiece> pieces, int modelType = 2)
    {
        var output = new MemoryStream();
        foreach (var p in pieces)
        {
            var piece = new MemoryStream();
            WriteBytes(piece, 1, System.Text.Encoding.UTF8.GetBytes(p.Piece));
            WriteKey(piece, 2, 5);
            piece.Write(BitConverter.GetBytes(p.Score));
            WriteKey(piece, 3, 0);
            WriteVarint(piece, (ulong)p.Type);
            WriteBytes(output, 1, piece.ToArray());
        }
        var trainer = new MemoryStream();
        WriteKey(trainer, 3, 0); WriteVarint(trainer, (ulong)modelType);
        WriteKey(trainer, 35, 0); WriteVarint(trainer, 1);
        WriteBytes(output, 2, trainer.ToArray());
        var normalizer = new MemoryStream();
        WriteBytes(normalizer, 1, "identity"u8.ToArray());
        WriteKey(normalizer, 3, 0); WriteVarint(normalizer, 1);
        WriteKey(normalizer, 4, 0); WriteVarint(normalizer, 0);
        WriteKey(normalizer, 5, 0); WriteVarint(normalizer, 1);
        WriteBytes(output, 3, normalizer.ToArray());
        return output.ToArray();
    }

    private static void WriteKey(Stream s, int field, int wire) => WriteVarint(s, (ulong)(field << 3 | wire));

    private static void WriteVarint(Stream s, ulong v)
    {
        for (; v >= 0x80; v >>= 7) s.WriteByte((byte)(v | 0x80));
        s.WriteByte((byte)v);
    }

    private static void WriteBytes(Stream s, int field, byte[] bytes)
    {
        WriteKey(s, field, 2);
        WriteVarint(s, (ulong)bytes.Length);
        s.Write(bytes);
    }
}
